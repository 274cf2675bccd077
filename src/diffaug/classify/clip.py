"""Zero-shot CLIP, the paper's second baseline: the class whose prompt "a photo of a {}" is closest.

Images go through CLIP's own processor (resize, centre crop and CLIP's mean/std normalisation: the
paper's code skipped the normalisation); weights load as safetensors at a pinned revision, never
with remote code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from diffaug.errors import DiffaugError
from diffaug.progress import quiet_libraries


def load_clip(name: str, revision: str):
    """(CLIPModel, CLIPProcessor) from a local folder or the hub (or its cache)."""
    from transformers import CLIPModel, CLIPProcessor

    quiet_libraries()

    def load(local: bool):
        processor = CLIPProcessor.from_pretrained(name, revision=revision, local_files_only=local)
        model = CLIPModel.from_pretrained(name, revision=revision, use_safetensors=True, local_files_only=local)
        return model.eval(), processor

    try:  # the cache (or a folder) first: a pinned revision that is there needs no network at all
        return load(local=True)
    except (OSError, ValueError):
        pass
    try:
        return load(local=False)
    except (OSError, ValueError) as e:
        raise DiffaugError(
            f"the CLIP model {name} (revision {revision}) could not be loaded ({str(e).splitlines()[0]}); "
            f"on a machine with internet run `hf download {name} --revision {revision}` and copy the Hugging Face "
            "cache here (or set HF_HOME to a copy), give a local folder, or set clip.model: null."
        ) from None


def _pooled(out) -> torch.Tensor:
    """transformers 5 returns a model output whose pooler_output is the projected embedding."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@torch.no_grad()
def clip_probabilities(
    model, processor, files: list[Path], classes: list[str], template: str, batch_size: int, device: torch.device
) -> np.ndarray:
    """(N, classes): CLIP's softmax over one prompt per class (its logit scale times cosine similarity)."""
    model.to(device)
    text = processor.tokenizer([template.format(c) for c in classes], padding=True, return_tensors="pt").to(device)
    prompts = _pooled(model.get_text_features(input_ids=text["input_ids"], attention_mask=text["attention_mask"]))
    prompts = prompts / prompts.norm(dim=-1, keepdim=True)
    out = []
    for start in range(0, len(files), batch_size):
        images = []
        for f in files[start : start + batch_size]:
            with Image.open(f) as im:
                images.append(im.convert("RGB"))
        pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"].to(device)
        embeds = _pooled(model.get_image_features(pixel_values=pixels))
        embeds = embeds / embeds.norm(dim=-1, keepdim=True)
        out.append((model.logit_scale.exp() * embeds @ prompts.T).softmax(1).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, len(classes)), dtype=np.float32)


def zero_shot(
    model, processor, files: list[Path], classes: list[str], template: str, batch_size: int, device: torch.device
) -> np.ndarray:
    """Predicted class index of each image: the prompt of highest cosine similarity."""
    return clip_probabilities(model, processor, files, classes, template, batch_size, device).argmax(1)
