"""Seeded randomness that does not depend on the order things are processed in."""

import hashlib

import numpy as np


def class_rng(seed: int, name: str) -> np.random.Generator:
    """A generator per (seed, class name): adding or reordering classes leaves the others alone."""
    return np.random.default_rng([seed, int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)])
