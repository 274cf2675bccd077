"""FID and KID between two sets of features (rows = images), as numbers, not as a pipeline.

FID is the Fréchet distance between the Gaussians fitted to the two sets, pytorch-fid's formula
(the paper's Table 1). It is biased for small sets (a few hundred images per class), so KID comes beside it:
the unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y / d + 1)³ (Bińkowski et al.
2018, as in torch-fidelity), averaged over random subsets, with its standard deviation.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from diffaug.errors import DiffaugError


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of (N, D) features."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise DiffaugError(f"FID needs at least 2 images, got {len(f)}; generate or keep more images.")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1 S2)^½): the value of pytorch-fid's
    `calculate_frechet_distance` (a test checks they agree), without scipy's `sqrtm`, which takes
    about 10 s for one 512-d matrix on a CPU. Tr (S1 S2)^½ is the sum of the square roots of the
    eigenvalues of the symmetric S1^½ S2 S1^½ (same spectrum as S1 S2), found with two `eigh`.
    Round-off negatives of singular covariances (fewer images than dimensions) count as zero,
    where pytorch-fid adds 1e-6 to the diagonal: the two differ by about that much there.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    # One BLAS thread: on a shared CPU, OpenBLAS threads made one 512-d eigh take 5.7 s instead of 0.1 s.
    with threadpool_limits(1, user_api="blas"):
        w, v = np.linalg.eigh(sigma1)
        root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        middle = root1 @ sigma2 @ root1
        tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean
    return max(0.0, float(value))  # a tiny negative value is round-off: FID is a squared distance


def fid(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(*statistics(a), *statistics(b))


def kid(a: np.ndarray, b: np.ndarray, subsets: int, subset_size: int, seed) -> tuple[float, float]:
    """(mean, std) of the unbiased polynomial-kernel MMD² over `subsets` random subsets.

    The subset size is capped at the smaller set, so small classes still get a value; the draws
    come from `seed` alone (anything numpy's default_rng takes), so the same features always give
    the same numbers.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise DiffaugError(f"KID needs at least 2 images in each set, got {len(a)} and {len(b)}.")
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)

    def kernel(u, v):
        k = u @ v.T / d + 1
        return k * k * k

    with threadpool_limits(1, user_api="blas"):  # as in frechet_distance: threads thrash on a shared CPU
        for i in range(subsets):
            x = a[rng.choice(len(a), m, replace=False)]
            y = b[rng.choice(len(b), m, replace=False)]
            kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
            # Off-diagonal means of k(x, x') and k(y, y') make the estimate unbiased.
            within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            values[i] = within - 2 * kxy.mean()
    return float(values.mean()), float(values.std())
