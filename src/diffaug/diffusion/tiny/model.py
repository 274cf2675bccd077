"""The built-in model's networks: the UNet, VAE and CLIP text encoder of Stable Diffusion's
architecture at a size a CPU trains in minutes, saved as a regular StableDiffusionPipeline folder."""

from __future__ import annotations

import contextlib
import os
import tempfile

import torch

from diffaug.diffusion.tiny.render import IMAGE_SIZE
from diffaug.diffusion.tiny.tokenizer import MAX_TOKENS, build_tokenizer

# Sizes of the three networks. The VAE reduces 32x32x3 to 8x8x4 (factor 4: three blocks), so the
# UNet works on 64 latent pixels; that is what makes CPU pretraining take minutes.
ARCH = {
    "vae_channels": (8, 16, 32),  # the 32x32 level dominates the cost: keep it narrow
    "latent_channels": 4,
    "unet_channels": (32, 64, 64),
    "unet_attn": (False, True, True),  # cross-attention per level (8x8, 4x4, 2x2 latent pixels)
    "unet_heads": 4,  # diffusers' `attention_head_dim` is really the number of heads
    "text_hidden": 64,
    "text_layers": 2,
    "text_heads": 4,
    "groups": 8,  # GroupNorm groups (must divide every channel count)
}


@contextlib.contextmanager
def _seeded(seed: int):
    """Initialise weights from `seed` without disturbing the caller's global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_vae(seed: int):
    from diffusers import AutoencoderKL

    n = len(ARCH["vae_channels"])
    with _seeded(seed):
        return AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=ARCH["vae_channels"],
            layers_per_block=1,
            latent_channels=ARCH["latent_channels"],
            norm_num_groups=ARCH["groups"],
            sample_size=IMAGE_SIZE,
            mid_block_add_attention=False,  # 8x8 needs no attention in the autoencoder
            force_upcast=False,  # fp32 throughout; SD's upcast exists for fp16 weights
        )


def build_text_encoder(seed: int, tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=ARCH["text_hidden"],
        intermediate_size=4 * ARCH["text_hidden"],
        projection_dim=ARCH["text_hidden"],
        num_hidden_layers=ARCH["text_layers"],
        num_attention_heads=ARCH["text_heads"],
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,  # pooled output reads the first EOS token
        pad_token_id=tokenizer.pad_token_id,
    )
    with _seeded(seed):
        return CLIPTextModel(config)


def build_unet(seed: int):
    from diffusers import UNet2DConditionModel

    attn = ARCH["unet_attn"]
    scale = 2 ** (len(ARCH["vae_channels"]) - 1)
    with _seeded(seed):
        return UNet2DConditionModel(
            sample_size=IMAGE_SIZE // scale,  # latent side: the pipeline's default height is this * vae scale
            in_channels=ARCH["latent_channels"],
            out_channels=ARCH["latent_channels"],
            down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn),
            up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
            block_out_channels=ARCH["unet_channels"],
            layers_per_block=1,
            cross_attention_dim=ARCH["text_hidden"],
            attention_head_dim=ARCH["unet_heads"],
            norm_num_groups=ARCH["groups"],
        )


def build_models(seed: int, tokenizer_dir: str | os.PathLike | None = None):
    """Fresh (untrained) unet, vae, text_encoder and tokenizer, each initialised from its own seed.

    The tokenizer's vocab.json and merges.txt are written to `tokenizer_dir` (a temporary folder if None).
    """
    if tokenizer_dir is None:
        tokenizer_dir = tempfile.mkdtemp(prefix="tiny_tokenizer_")
    tokenizer = build_tokenizer(tokenizer_dir)
    return build_unet(seed), build_vae(seed + 1), build_text_encoder(seed + 2, tokenizer), tokenizer


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def noise_schedule():
    """SD's noise schedule (scaled_linear, 1000 steps, epsilon prediction), saved with the pipeline."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="epsilon",
        clip_sample=False,
        steps_offset=1,
    )  # SD v1's value; the pipeline warns about 0


def save_pipeline(out_dir: str | os.PathLike, unet, vae, text_encoder, tokenizer, scheduler):
    """Save as a standard StableDiffusionPipeline folder (safetensors), sampling with DPM-Solver++."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DPMSolverMultistepScheduler.from_config(scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(out_dir), safe_serialization=True)
    return pipe
