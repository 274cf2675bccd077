"""DreamBooth (Ruiz et al. 2023) for one class, as in the diffusers example, as library functions.

The UNet (optionally the text encoder) learns a handful of real images of the class under a prompt
with a rare identifier ("a photo of sks dog"). Prior preservation adds images the base model draws
for the plain class prompt, weighted by `prior_loss_weight`, so the model keeps its idea of the class.
`mode: lora` trains low-rank adapters through peft instead: megabytes instead of a whole UNet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file

from diffaug.checkpoint import Checkpoints
from diffaug.device import Meter, pick_device
from diffaug.diffusion.finetune import (
    Latents,
    accelerator,
    adamw,
    denoising_loss,
    encode_prompts,
    n_trainable,
    noise_and_target,
    scaled_lr,
    training_scheduler,
)
from diffaug.diffusion.jobs import Settings, cache_key, cached_path, fill_cache, plan
from diffaug.diffusion.loading import fingerprint, load_pipeline, pick_dtype, speed_up
from diffaug.diffusion.tuning import Tuning, final_loss, optimise, trainable_weights
from diffaug.io import read_json
from diffaug.params import DreamBooth

# `lora_targets: attention` is the diffusers DreamBooth LoRA example's; `all` adds every other linear and
# conv layer of the UNet (transformer projections and feed-forward, ResNet convs, time embedding), the
# layers full fine-tuning changes besides attention: a small UNet has little in its attention alone.
UNET_LORA_TARGETS = {
    "attention": ["to_k", "to_q", "to_v", "to_out.0"],
    "all": [
        "to_k",
        "to_q",
        "to_v",
        "to_out.0",
        "proj_in",
        "proj_out",
        "ff.net.0.proj",
        "ff.net.2",
        "conv1",
        "conv2",
        "conv_shortcut",
        "time_emb_proj",
    ],
}
TEXT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
UNET_FILE = "unet/diffusion_pytorch_model.safetensors"
TEXT_FILE = "text_encoder/model.safetensors"
LORA_FILE = "pytorch_lora_weights.safetensors"


def prior_images(source: dict, prompt: str, label: str, params: DreamBooth, resolution: int) -> list[Path]:
    """The class images of prior preservation: the base model's own drawings of the class prompt,
    made (and cached) by the generation library in the GPU's fast precision."""
    device = pick_device(params.device)
    dtype = pick_dtype(device)
    settings = Settings(
        model=fingerprint(source),
        scheduler="dpm++",
        steps=params.prior_steps,
        guidance=params.prior_guidance,
        negative_prompt="",
        height=resolution,
        width=resolution,
        save_size=None,
        dtype=str(dtype).removeprefix("torch."),
    )
    jobs = plan({label: [prompt]}, params.class_images, params.seed)
    paths = [cached_path(cache_key(j, settings)) for j in jobs]
    if not all(p.exists() for p in paths):
        pipe = speed_up(load_pipeline(source, device, dtype, "dpm++"), device, 8)
        fill_cache(pipe, jobs, settings, batch_size=8)
        del pipe
    return paths


def learning_rate(params: DreamBooth) -> float:
    """Adapters learn with their own rate: LoRA at the full fine-tune's rate barely moves (the diffusers
    examples use about 20x more for LoRA than for the whole UNet)."""
    return params.lora_lr if params.mode == "lora" else params.lr


@torch.no_grad()
def instance_loss(pipe, latents: Latents, prompt: str, seed: int = 0, draws: int = 8) -> float:
    """Denoising loss on the instance images at fixed noise and timesteps: the number training lowers."""
    gen = torch.Generator().manual_seed(seed)
    device = pipe.unet.device
    idx = torch.arange(len(latents.mean)).repeat(draws)
    z0 = latents.sample(idx, gen)
    zt, t, target = noise_and_target(training_scheduler(pipe), z0, gen)
    text = encode_prompts(pipe, [prompt], device).expand(len(idx), -1, -1)
    return denoising_loss(pipe.unet, zt.to(device), t.to(device), text, target.to(device)).item()


def _add_lora(pipe, rank: int, targets: str, text_encoder: bool) -> None:
    from peft import LoraConfig

    # LoRA's Gaussian initialisation draws from the global RNG: the caller has seeded it.
    pipe.unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=UNET_LORA_TARGETS[targets])
    )
    if text_encoder:
        pipe.text_encoder.add_adapter(
            LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=TEXT_LORA_TARGETS)
        )


def train_dreambooth(
    pipe,
    instance: torch.Tensor,
    prompt: str,
    prior: Optional[torch.Tensor],
    class_prompt: str,
    params: DreamBooth,
    log=print,
    checkpoints: Optional[Checkpoints] = None,
) -> dict:
    """Fine-tune `pipe` in place on `instance` pixels (N,3,H,W in [-1, 1]); returns the training record.
    With `checkpoints`, a killed run resumes from its last checkpoint and ends with the same weights."""
    acc = accelerator(params.mixed_precision, params.gradient_accumulation, params.device)
    torch.manual_seed(params.seed)  # LoRA init and anything else drawing from the global RNG
    gen = torch.Generator().manual_seed(params.seed + acc.process_index)
    for m in (pipe.unet, pipe.vae, pipe.text_encoder):
        m.requires_grad_(False)
        m.to(acc.device)
    inst = Latents.encode(pipe.vae, instance)
    cls = Latents.encode(pipe.vae, prior) if prior is not None else None
    pipe.vae.to("cpu")  # latents are cached: training never runs the VAE, so its GPU memory goes to the UNet
    before = instance_loss(pipe, inst, prompt, params.seed)
    lr = scaled_lr(
        learning_rate(params), params.scale_lr, params.batch_size, params.gradient_accumulation, acc.num_processes
    )
    tuning, unet_t, text_t = _trainer(pipe, params, acc, gen, lr)
    batch_step = _batch_step(pipe, tuning, unet_t, text_t, (inst, cls), [prompt, class_prompt], params)
    meter = Meter(acc.device)
    done = optimise(tuning, unet_t, batch_step, len(inst.mean), params, checkpoints, "dreambooth")
    record = meter.reading(done, "steps")
    pipe.unet = acc.unwrap_model(unet_t).eval()
    pipe.text_encoder = acc.unwrap_model(text_t).eval()
    after = instance_loss(pipe, inst, prompt, params.seed)
    log(f"dreambooth: instance loss {before:.4f} -> {after:.4f} in {record['seconds']} s")
    return {
        "trainable_parameters": n_trainable(pipe.unet, pipe.text_encoder),
        "lr": lr,
        "final_loss": round(final_loss(tuning.losses), 5),
        "instance_loss_before": round(before, 5),
        "instance_loss_after": round(after, 5),
        "cost": record,
    }


def _trainer(pipe, params: DreamBooth, acc, gen: torch.Generator, lr: float):
    """The UNet (and text encoder) made trainable, whole or through LoRA adapters, and prepared by
    accelerate with their AdamW: (Tuning, the UNet to train, the text encoder to call)."""
    unet, text_encoder, train_text = pipe.unet, pipe.text_encoder, params.train_text_encoder
    if params.mode == "lora":
        _add_lora(pipe, params.lora_rank, params.lora_targets, train_text)
    else:
        unet.requires_grad_(True)
        text_encoder.requires_grad_(train_text)
    if params.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if train_text:
            text_encoder.gradient_checkpointing_enable()
    weights = trainable_weights(unet=unet, text_encoder=text_encoder)
    opt = adamw(list(weights.values()), lr, params.use_8bit_adam, acc.device)
    models = acc.prepare(unet, text_encoder, opt) if train_text else acc.prepare(unet, opt)
    models[0].train()
    return Tuning(acc, models[-1], gen, weights), models[0], models[1] if train_text else text_encoder


def _batch_step(pipe, tuning: Tuning, unet_t, text_t, latents: tuple, prompts: list[str], params: DreamBooth):
    """One batch of DreamBooth: instance loss plus the weighted prior loss, back-propagated and stepped."""
    acc, gen, (inst, cls) = tuning.acc, tuning.gen, latents
    scheduler, bs, device, train_text = (
        training_scheduler(pipe),
        params.batch_size,
        acc.device,
        params.train_text_encoder,
    )
    if not train_text:  # computed once: the text encoder does not change
        with torch.no_grad():
            fixed = encode_prompts(pipe, prompts, device)

    def step(idx: torch.Tensor) -> float:
        z0 = inst.sample(idx, gen)
        if cls is not None:
            z0 = torch.cat([z0, cls.sample(torch.randint(0, len(cls.mean), (bs,), generator=gen), gen)])
        zt, t, target = noise_and_target(scheduler, z0, gen)
        enc = encode_prompts(pipe, prompts, device, text_t) if train_text else fixed
        # expand, not indexing: its backward is a plain sum, deterministic on any thread count
        text = torch.cat([enc[i : i + 1].expand(bs, -1, -1) for i in range(1 + (cls is not None))])
        with acc.autocast():
            each = denoising_loss(unet_t, zt.to(device), t.to(device), text, target.to(device), reduce=False)
        loss = each[:bs].mean() + (params.prior_loss_weight * each[bs:].mean() if cls is not None else 0.0)
        acc.backward(loss)
        if acc.sync_gradients:
            acc.clip_grad_norm_(list(tuning.weights.values()), 1.0)
        tuning.opt.step()
        tuning.opt.zero_grad(set_to_none=True)
        return loss.item()

    return step


def save_dreambooth(pipe, out: Path, params: DreamBooth) -> None:
    """Full mode: the UNet (and text encoder) as safetensors; LoRA mode: the adapter weights only."""
    if params.mode == "lora":
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        text = (
            convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.text_encoder))
            if params.train_text_encoder
            else None
        )
        # The UNet's adapters stay in peft's key format: convert_state_dict_to_diffusers renames only the
        # attention layers (to the old `lora.down` names), and diffusers' loader, seeing peft keys for the
        # convs of `lora_targets: all`, then silently drops those attention adapters.
        StableDiffusionPipeline.save_lora_weights(
            out,
            unet_lora_layers=get_peft_model_state_dict(pipe.unet),
            text_encoder_lora_layers=text,
            safe_serialization=True,
        )
        return
    pipe.unet.save_pretrained(out / "unet", safe_serialization=True)
    if params.train_text_encoder:
        pipe.text_encoder.save_pretrained(out / "text_encoder")  # safetensors (transformers 5 default)


class DreamBoothWeights:
    """Puts one class's fine-tuned weights into a loaded pipeline, replacing the previous class's."""

    def __init__(self, root: Path):
        self.root = root
        self.base_text = None

    def __call__(self, pipe, label: str) -> None:
        folder = self.root / label
        info = read_json(folder / "trained.json")
        if info["mode"] == "lora":
            pipe.unload_lora_weights()
            # diffusers' load_lora_weights, minus the text encoder when it was not trained: loading it
            # anyway only prints a warning that there are no keys for it.
            state, alphas, metadata = pipe.lora_state_dict(
                str(folder), weight_name=LORA_FILE, return_lora_metadata=True
            )
            pipe.load_lora_into_unet(state, network_alphas=alphas, unet=pipe.unet, metadata=metadata, _pipeline=pipe)
            if info["train_text_encoder"]:
                pipe.load_lora_into_text_encoder(
                    state,
                    network_alphas=alphas,
                    text_encoder=pipe.text_encoder,
                    lora_scale=pipe.lora_scale,
                    metadata=metadata,
                    _pipeline=pipe,
                )
            return
        unet = getattr(pipe.unet, "_orig_mod", pipe.unet)  # a torch.compile'd UNet wraps the module
        unet.load_state_dict(load_file(folder / UNET_FILE))
        if self.base_text is None:
            self.base_text = {k: v.clone() for k, v in pipe.text_encoder.state_dict().items()}
        text = folder / TEXT_FILE
        pipe.text_encoder.load_state_dict(load_file(text) if text.exists() else self.base_text)


def generation_prompts(prompt: str, classes: list[str]) -> dict[str, list[str]]:
    """The instance prompt per class ("a photo of sks seven"): what each class's model learned."""
    return {c: [prompt.format(c)] for c in classes}
