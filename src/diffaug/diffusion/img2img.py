"""img2img (SDEdit, Meng et al. 2022; Real Guidance, He et al. 2023; DA-Fusion, Trabucco et al. 2024):
each synthetic image starts from a real image of d_original, noised to `strength` and denoised under
its class prompt by the base model, so it keeps the parent's layout and varies its details.

Jobs are diffusion.jobs' (seed per image, cache, resume, batching, several processes): a
job's parent and strength are part of its cache key and of the manifest (lineage).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from diffusers import StableDiffusionImg2ImgPipeline
from diffusers.pipelines.stable_diffusion import StableDiffusionPipelineOutput
from PIL import Image, ImageOps

from diffaug.diffusion.jobs import Job, image_seed
from diffaug.paths import ORIGINAL


def plan_img2img(
    prompts: dict[str, list[str]],
    parents: dict[str, list[tuple[str, str]]],
    counts: dict[str, int],
    strengths: list[float],
    seed: int,
    weights: Optional[dict[str, str]] = None,
) -> list[Job]:
    """`counts[c]` jobs for class c. Image i of a class starts from real image i % P of its P parents
    ((file, sha256), sorted by file), so every parent has counts[c] / P children (one more for the
    first ones); its strength cycles through `strengths` across parents and across a parent's children."""
    jobs, weights = [], weights or {}
    for c, ps in prompts.items():
        real = sorted(parents[c])
        for i in range(counts[c]):
            file, sha = real[i % len(real)]
            strength = strengths[(i % len(real) + i // len(real)) % len(strengths)]  # parent k, child j: k + j
            jobs.append(
                Job(
                    c,
                    i,
                    ps[i % len(ps)],
                    image_seed(seed, c, i),
                    weights.get(c, ""),
                    parent=file,
                    parent_sha256=sha,
                    strength=float(strength),
                )
            )
    return jobs


class FromParents(StableDiffusionImg2ImgPipeline):
    """The img2img pipeline over the base model's components, reading each job's parent from `root`
    (data/original) at `side` px. At a strength that leaves no denoising step (strength x steps < 1:
    diffusers would run none and fail), the image is the parent through the VAE and back."""

    root: Path = ORIGINAL
    side: int = 512

    @classmethod
    def over(cls, pipe, root: Path, side: Optional[int]) -> FromParents:
        """The same components as `pipe` (no copy of the weights), parents from `root`."""
        from diffusers.utils import logging

        # from_pipe casts every model to its `dtype` (default float32): keep the pipeline's own. The
        # cast warns about float32 modules even when there are none ([]): quiet for that call.
        level = logging.get_verbosity()
        logging.set_verbosity_error()
        try:
            out = cls.from_pipe(pipe, dtype=pipe.dtype)
        finally:
            logging.set_verbosity(level)
        out.root, out.side = Path(root), side or pipe.unet.config.sample_size * pipe.vae_scale_factor
        out.set_progress_bar_config(disable=True)
        return out

    def start_images(self, jobs: list[Job]) -> list[Image.Image]:
        images = []
        for j in jobs:
            with Image.open(self.root / j.parent) as im:
                images.append(ImageOps.fit(im.convert("RGB"), (self.side, self.side), Image.Resampling.LANCZOS))
        return images

    @torch.no_grad()
    def __call__(self, *args, image=None, strength: float = 0.8, num_inference_steps: int = 50, **kwargs):
        if int(num_inference_steps * strength) == 0:
            return self.round_trip(image, kwargs.get("output_type", "pil"))
        return super().__call__(
            *args, image=image, strength=strength, num_inference_steps=num_inference_steps, **kwargs
        )

    def round_trip(self, images: list[Image.Image], output_type: str = "pil") -> StableDiffusionPipelineOutput:
        pixels = self.image_processor.preprocess(images).to(self.vae.device, self.vae.dtype)
        latents = self.vae.encode(pixels).latent_dist.mode()
        decoded = self.vae.decode(latents).sample
        return StableDiffusionPipelineOutput(
            images=self.image_processor.postprocess(decoded, output_type=output_type), nsfw_content_detected=None
        )
