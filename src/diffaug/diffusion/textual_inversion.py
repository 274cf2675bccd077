"""Textual Inversion (Gal et al. 2022) for one class, as in the diffusers example, as library functions.

A new token `<class>` (with `num_vectors` embedding rows) is added to the tokenizer, initialised from
the class word, and only its embedding rows learn to denoise the class's real images under prompts
like "a photo of a <class>". Every other weight stays byte-identical (the rows are restored after
each step, since AdamW's weight decay would move them). The output, `learned_embeds.safetensors`,
loads with `pipe.load_textual_inversion`.
"""

from __future__ import annotations

from typing import Optional

import torch
from safetensors.torch import save_file

from diffaug.checkpoint import Checkpoints
from diffaug.device import Meter
from diffaug.diffusion.finetune import (
    Latents,
    accelerator,
    adamw,
    denoising_loss,
    encode_prompts,
    noise_and_target,
    scaled_lr,
    training_scheduler,
)
from diffaug.diffusion.tuning import Tuning, final_loss, optimise, trainable_weights
from diffaug.errors import DiffaugError
from diffaug.params import TextualInversion
from diffaug.rules import token_of

EMBEDS_FILE = "learned_embeds.safetensors"

# The diffusers example's object templates (imagenet_templates_small).
OBJECT_TEMPLATES = [
    "a photo of a {}",
    "a rendering of a {}",
    "a cropped photo of the {}",
    "the photo of a {}",
    "a photo of a clean {}",
    "a photo of a dirty {}",
    "a dark photo of the {}",
    "a photo of my {}",
    "a photo of the cool {}",
    "a close-up photo of a {}",
    "a bright photo of the {}",
    "a cropped photo of a {}",
    "a photo of the {}",
    "a good photo of the {}",
    "a photo of one {}",
    "a close-up photo of the {}",
    "a rendition of the {}",
    "a photo of the clean {}",
    "a rendition of a {}",
    "a photo of a nice {}",
    "a good photo of a {}",
    "a photo of the nice {}",
    "a photo of the small {}",
    "a photo of the weird {}",
    "a photo of the large {}",
    "a photo of a cool {}",
    "a photo of a small {}",
]


def token_text(token: str, num_vectors: int) -> str:
    """How a multi-vector token is written in a prompt (diffusers' `maybe_convert_prompt` does the same)."""
    return " ".join([token] + [f"{token}_{i}" for i in range(1, num_vectors)])


def fill(template: str, word: str, label: str) -> str:
    """A prompt from a template: {} = the token's text, {class} = the class name ("a photo of the {} digit {class}")."""
    return template.format(word, **{"class": label})


def expand_templates(templates: tuple[str, ...]) -> list[str]:
    return [t for name in templates for t in (OBJECT_TEMPLATES if name == "object" else [name])]


def add_token(pipe, token: str, num_vectors: int, init_word: str) -> list[int]:
    """Add `token` (+ `token_1`...) to the tokenizer, each row initialised to the init word's embedding."""
    names = token_text(token, num_vectors).split()
    if pipe.tokenizer.add_tokens(names) != num_vectors:
        raise DiffaugError(f"the token {token} is already in the base model's vocabulary; rename the class.")
    init_ids = pipe.tokenizer(init_word, add_special_tokens=False).input_ids
    if not init_ids:
        raise DiffaugError(f"textual_inversion.init_word {init_word!r} gives no tokens; use a word.")
    ids = pipe.tokenizer.convert_tokens_to_ids(names)
    # mean_resizing would draw the new rows from the global RNG; they are overwritten just below anyway.
    pipe.text_encoder.resize_token_embeddings(len(pipe.tokenizer), mean_resizing=False)
    weight = pipe.text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        weight[ids] = weight[init_ids].mean(dim=0)  # a multi-token word: the mean of its pieces
    return ids


def train_textual_inversion(
    pipe,
    pixels: torch.Tensor,
    label: str,
    params: TextualInversion,
    log=print,
    checkpoints: Optional[Checkpoints] = None,
) -> tuple[dict, torch.Tensor]:
    """Learn the embedding of the token `<label>` on `pixels` (N,3,H,W in [-1, 1]); returns (record, learned rows).
    With `checkpoints`, a killed run resumes from its last checkpoint and ends with the same embedding."""
    token, init_word = token_of(label), params.init_word or label
    acc = accelerator(params.mixed_precision, params.gradient_accumulation, params.device)
    gen = torch.Generator().manual_seed(params.seed + acc.process_index)
    for m in (pipe.unet, pipe.vae, pipe.text_encoder):
        m.requires_grad_(False)
        m.to(acc.device)
    latents = Latents.encode(pipe.vae, pixels)
    pipe.vae.to("cpu")  # latents are cached: training never runs the VAE
    ids = add_token(pipe, token, params.num_vectors, init_word)
    lr = scaled_lr(params.lr, params.scale_lr, params.batch_size, params.gradient_accumulation, acc.num_processes)
    tuning, text_t, original = _trainer(pipe, params, acc, gen, lr)
    batch_step = _batch_step(pipe, tuning, text_t, latents, original, ids, label, params)
    meter = Meter(acc.device)
    done = optimise(tuning, text_t, batch_step, len(latents.mean), params, checkpoints, f"textual inversion {token}")
    record = meter.reading(done, "steps")
    pipe.text_encoder = acc.unwrap_model(text_t).eval()
    pipe.text_encoder.requires_grad_(False)
    learned = pipe.text_encoder.get_input_embeddings().weight[ids].detach().float().cpu().clone()
    loss = final_loss(tuning.losses)
    log(f"textual inversion {token}: loss {loss:.4f} in {record['seconds']} s")
    return {
        "token": token,
        "init_word": init_word,
        "lr": lr,
        "final_loss": round(loss, 5),
        "trainable_parameters": learned.numel(),
        "cost": record,
    }, learned


def _trainer(pipe, params: TextualInversion, acc, gen: torch.Generator, lr: float):
    """The token embeddings made trainable with their AdamW, prepared by accelerate:
    (Tuning, the text encoder to train, the embeddings before training)."""
    text_encoder = pipe.text_encoder
    embeddings = text_encoder.get_input_embeddings()
    embeddings.weight.requires_grad_(True)
    original = embeddings.weight.detach().clone()
    if params.gradient_checkpointing:
        text_encoder.gradient_checkpointing_enable()
        pipe.unet.enable_gradient_checkpointing()
    text_encoder.train()  # dropout is 0 in CLIP; train() is needed for gradient checkpointing
    opt = adamw([embeddings.weight], lr, False, acc.device, weight_decay=0.0)
    text_t, opt = acc.prepare(text_encoder, opt)
    return Tuning(acc, opt, gen, trainable_weights(text_encoder=text_encoder)), text_t, original


def _batch_step(pipe, tuning: Tuning, text_t, latents: Latents, original: torch.Tensor, ids: list[int], label, params):
    """One batch of Textual Inversion: the denoising loss of random templates (plus the pull toward the
    init word), back-propagated and stepped; every row but the token's is then put back."""
    acc, gen, device = tuning.acc, tuning.gen, tuning.acc.device
    embeddings = pipe.text_encoder.get_input_embeddings()
    keep = torch.ones(len(embeddings.weight), dtype=torch.bool)
    keep[ids] = False
    templates, word = expand_templates(params.templates), token_text(token_of(label), params.num_vectors)
    scheduler = training_scheduler(pipe)

    def step(idx: torch.Tensor) -> float:
        z0 = latents.sample(idx, gen)
        picks = torch.randint(0, len(templates), (len(idx),), generator=gen).tolist()
        zt, t, target = noise_and_target(scheduler, z0, gen)
        with acc.autocast():
            text = encode_prompts(pipe, [fill(templates[i], word, label) for i in picks], device, text_t)
            loss = denoising_loss(pipe.unet, zt.to(device), t.to(device), text, target.to(device))
            # The original TI code's embedding_reg_weight: a pull toward the init word, so the token
            # cannot drift into another concept of the base model while it fits a few images.
            drift = embeddings.weight[ids].float() - original[ids].to(device)
            reg = params.init_reg * drift.pow(2).sum(dim=-1).mean()
        acc.backward(loss + reg)
        tuning.opt.step()
        tuning.opt.zero_grad(set_to_none=True)
        with torch.no_grad():  # only the new rows may change
            embeddings.weight[keep] = original[keep].to(embeddings.weight.dtype)
        return loss.item()

    return step


def save_embeds(path, token: str, learned: torch.Tensor) -> None:
    """The diffusers format: {token: (num_vectors, dim)}; `load_textual_inversion` expands the vectors."""
    save_file({token: learned.contiguous()}, str(path))


def load_tokens(pipe, root, classes: list[str], trained: dict[str, dict]) -> None:
    """Put every class's learned token (models/textual_inversion/<class>) into a loaded pipeline."""
    pipe.load_textual_inversion(
        [str(root / c) for c in classes],
        token=[trained[c]["token"] for c in classes],
        weight_name=EMBEDS_FILE,
        use_safetensors=True,
        local_files_only=True,
    )


def generation_prompts(prompt: str, trained: dict[str, dict]) -> dict[str, list[str]]:
    """The generation prompt per class, around its learned token ("a photo of a <seven>")."""
    return {c: [fill(prompt, info["token"], c)] for c, info in trained.items()}
