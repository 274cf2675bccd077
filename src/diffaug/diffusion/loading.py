"""Loading the base model as a diffusers Stable Diffusion pipeline, with the speed settings chosen by device.

The base model is either the project's built-in tiny model (saved in models/base/pipeline) or a hub
model, whose weights stay in the Hugging Face cache; models/base/source.json says which, and at
which commit. Generation never downloads: the `base_model` stage did that.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from diffaug.errors import DiffaugError
from diffaug.io import sha256_tree
from diffaug.paths import BASE
from diffaug.progress import quiet_libraries

SCHEDULERS = {  # name -> (diffusers class name, extra config)
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "lms": ("LMSDiscreteScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
}


def pick_dtype(device: torch.device, setting: str = "auto") -> torch.dtype:
    """auto: bf16 on GPUs that have it, else fp16 on CUDA/MPS; fp32 on the CPU (fp16 is slow there)."""
    if setting != "auto":
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[setting]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if device.type == "mps" else torch.float32


def read_source(base: Path = BASE) -> dict:
    path = base / "source.json"
    if not path.exists():
        raise DiffaugError(f"{path} is missing; run `dvc repro base_model` first.")
    return json.loads(path.read_text())


def fingerprint(source: dict, base: Path = BASE) -> str:
    """What identifies the model's weights: the hub commit, or a hash of the built-in model's files."""
    if source.get("commit"):
        return f"{source['model']}@{source['commit']}"
    return f"{source['model']}@{sha256_tree(base / 'pipeline')[:16]}"


def model_meta(source: dict, method: str = "") -> dict:
    """The manifest's model and revision columns: which weights drew an image (`+method` when fine-tuned)."""
    return {
        "model": source["model"] + (f"+{method}" if method else ""),
        "revision": source.get("commit") or source.get("revision") or "",
    }


def set_scheduler(pipe, name: str) -> None:
    import diffusers

    cls_name, extra = SCHEDULERS[name]
    pipe.scheduler = getattr(diffusers, cls_name).from_config(pipe.scheduler.config, **extra)


def load_pipeline(
    source: dict,
    device: torch.device,
    dtype: torch.dtype,
    scheduler: str,
    safety_checker: bool = False,
    base: Path = BASE,
):
    """A StableDiffusionPipeline on `device` (safetensors only; no remote code, no download)."""
    from diffusers import StableDiffusionPipeline

    quiet_libraries()
    kwargs = dict(dtype=dtype, use_safetensors=True)
    if not safety_checker:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    if source.get("commit"):
        where, kwargs["revision"], kwargs["local_files_only"] = source["model"], source["commit"], True
    else:
        if safety_checker:
            raise DiffaugError(
                "generate.safety_checker=true needs a hub model with a safety checker; "
                "the built-in model has none, so set it to false."
            )
        where = base / "pipeline"
    try:
        pipe = StableDiffusionPipeline.from_pretrained(where, **kwargs)
    except (OSError, ValueError) as e:
        raise DiffaugError(
            f"could not load the base model {source['model']} ({str(e).splitlines()[0]}); run `dvc repro base_model`."
        ) from None
    set_scheduler(pipe, scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def speed_up(
    pipe,
    device: torch.device,
    batch_size: int,
    compile_unet: bool = False,
    cpu_offload: bool = False,
    resolution: Optional[int] = None,
):
    """GPU settings: PyTorch SDPA attention, VAE slicing for big batches, VAE tiling above 768 px,
    optional torch.compile, optional model CPU offload for small GPUs. On the CPU only the device
    move applies."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    pipe.unet.set_attn_processor(AttnProcessor2_0())
    pipe.vae.set_attn_processor(AttnProcessor2_0())
    if cpu_offload and device.type == "cuda":
        pipe.enable_model_cpu_offload(device=device)  # moves each model to the GPU only while it runs
    else:
        pipe.to(device)
    if device.type == "cuda":
        if batch_size > 8:
            pipe.vae.enable_slicing()  # decode one image at a time: the VAE peak memory is per image
        if resolution and resolution > 768:
            # Decode in overlapping tiles: a 1024 px decode needs several GB at once. Below that a
            # tile is the whole image, so tiling would change nothing.
            pipe.vae.enable_tiling()
        pipe.unet.to(memory_format=torch.channels_last)
        if compile_unet:
            pipe.unet = torch.compile(pipe.unet, mode="reduce-overhead", fullgraph=True)
    return pipe
