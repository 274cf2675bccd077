"""Hub base models: download once into the Hugging Face cache and pin the exact commit."""

from __future__ import annotations

import os
from pathlib import Path

from diffaug.errors import DiffaugError

# What a StableDiffusionPipeline needs, in safetensors; skips the multi-GB single-file checkpoints
# and the .bin/.ckpt duplicates that SD repositories also hold.
PIPELINE_FILES = [
    "model_index.json",
    "scheduler/*.json",
    "tokenizer/*",
    "feature_extractor/*.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "safety_checker/config.json",
    "safety_checker/model.safetensors",
]


def hub_cache() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def resolve(model: str, revision: str) -> tuple[str, Path]:
    """Return (commit hash, local snapshot folder) for `model` at `revision`, downloading if needed.

    Offline (no network, or HF_HUB_OFFLINE=1) the cache must already hold that revision.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    try:
        path = snapshot_download(model, revision=revision, allow_patterns=PIPELINE_FILES, local_files_only=offline)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        try:  # the network failed: fall back to what the cache holds
            path = snapshot_download(model, revision=revision, allow_patterns=PIPELINE_FILES, local_files_only=True)
        except (LocalEntryNotFoundError, OSError):
            raise DiffaugError(
                f"the base model {model} at revision {revision} is not in the Hugging Face cache ({hub_cache()}) "
                f"and the hub could not be reached ({type(e).__name__}); on a machine with internet run "
                f"`hf download {model} --revision {revision}` and copy that cache here, or set HF_HOME to a copy."
            ) from None
    path = Path(path)
    if not (path / "model_index.json").exists():
        raise DiffaugError(
            f"{model} at revision {revision} has no model_index.json: it is not a diffusers "
            "Stable Diffusion pipeline; use a diffusers-format repository."
        )
    return path.name, path
