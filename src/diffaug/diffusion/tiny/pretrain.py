"""Pretraining the built-in model: the VAE on the rendered corpus, then the UNet and the text
encoder together on its latents, with the same latents cache and noising step as fine-tuning.

Deterministic for a fixed seed, machine and torch thread count (1 and 2 threads give different,
each reproducible, weights): every random draw comes from seeded generators, and torch's
deterministic-algorithms mode is on while training.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from diffaug.diffusion.finetune import Latents, noise_and_target
from diffaug.diffusion.tiny.model import build_models, n_params, noise_schedule, save_pipeline
from diffaug.diffusion.tiny.render import captions, render_corpus

# Defaults of pretrain(): about 4 minutes on a 2-core machine.
TRAIN = {
    "n_images": 6000,
    "vae_steps": 300,
    "vae_batch": 32,
    "vae_lr": 3e-3,
    "kl_weight": 1e-3,
    "unet_steps": 800,
    "unet_batch": 32,  # more, smaller steps: the prompt is followed sooner
    "unet_lr": 2e-3,
    "text_lr_mult": 0.2,  # a fast-moving text encoder collapsed to one output for all prompts
    "caption_dropout": 0.12,
}


def _schedule(opt, steps: int):
    """Linear warm-up over the first 5%, then cosine decay to zero: short runs end on their best weights."""
    from diffusers.optimization import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(opt, num_warmup_steps=max(1, steps // 20), num_training_steps=steps)


def train_vae(
    vae, images: torch.Tensor, steps: int, batch: int, lr: float, kl_weight: float, gen: torch.Generator, log=print
) -> float:
    """Reconstruction (MSE) plus a small KL term, as in SD's VAE minus its perceptual and GAN losses.

    The KL term keeps the latent smooth and near unit scale, which the diffusion model needs; it is
    small so reconstructions stay sharp. Returns the final reconstruction MSE (on [-1, 1] pixels).
    """
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr, weight_decay=0.0)
    sched = _schedule(opt, steps)
    mse_avg = None
    for step in range(steps):
        x = images[torch.randint(0, len(images), (batch,), generator=gen)]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        mse = F.mse_loss(recon, x)
        kl = posterior.kl().mean() / posterior.mean[0].numel()  # per latent element
        loss = mse + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        mse_avg = mse.item() if mse_avg is None else 0.95 * mse_avg + 0.05 * mse.item()
        if step % 100 == 0 or step == steps - 1:
            log(f"vae step {step:5d}  mse {mse_avg:.4f}  kl {kl.item():.3f}")
    vae.eval()
    return mse_avg


def latent_scaling_factor(latents: Latents, gen: torch.Generator) -> float:
    """1 / std of sampled latents: SD's recipe (its 0.18215) so the diffusion sees unit-variance latents."""
    z = latents.mean + latents.std * torch.randn(latents.mean.shape, generator=gen)
    return float(1.0 / z.std())


def _encode_captions(text_encoder, ids: torch.Tensor, cap: torch.Tensor) -> torch.Tensor:
    """Text embeddings for caption indices `cap`, encoding each distinct caption once (11 rows, not a batch).

    Rows are picked by a one-hot matmul, not by indexing: the backward of indexing accumulates with
    atomics across threads, which made runs with 2 threads differ from each other.
    """
    encoded = text_encoder(ids)[0]
    pick = F.one_hot(cap, len(ids)).to(encoded.dtype)
    return (pick @ encoded.flatten(1)).view(len(cap), *encoded.shape[1:])


@torch.no_grad()
def conditioning_gap(
    unet, text_encoder, ids, scheduler, z0: torch.Tensor, labels: torch.Tensor, seed: int = 0
) -> float:
    """Loss with wrong digit captions minus loss with the right ones, on fixed noisy latents.

    Near 0: the UNet ignores the prompt (it then draws random digits); clearly > 0: it follows it.
    """
    zt, t, noise = noise_and_target(scheduler, z0, torch.Generator().manual_seed(seed), timesteps=(200, 800))
    losses = []
    for cap in (labels, (labels + 1) % 10):
        pred = unet(zt, t, _encode_captions(text_encoder, ids, cap)).sample
        losses.append(F.mse_loss(pred, noise).item())
    return losses[1] - losses[0]


def _unet_optimizer(unet, text_encoder, cfg: dict) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        [
            {"params": unet.parameters(), "lr": cfg["unet_lr"]},
            # The text encoder starts from random too; a higher rate makes it tell the digits apart sooner.
            {"params": text_encoder.parameters(), "lr": cfg["unet_lr"] * cfg["text_lr_mult"]},
        ],
        weight_decay=1e-2,
    )


def _unet_loss(unet, text_encoder, ids, scheduler, latents: Latents, labels, cfg: dict, gen) -> torch.Tensor:
    """The denoising loss of one random batch; a `caption_dropout` share of it gets the empty caption."""
    batch = cfg["unet_batch"]
    idx = torch.randint(0, len(labels), (batch,), generator=gen)
    z0 = latents.sample(idx, gen)
    cap = labels[idx].clone()
    cap[torch.rand(batch, generator=gen) < cfg["caption_dropout"]] = len(ids) - 1  # the last caption is ""
    zt, t, noise = noise_and_target(scheduler, z0, gen)
    return F.mse_loss(unet(zt, t, _encode_captions(text_encoder, ids, cap)).sample, noise)


def train_unet(
    unet,
    text_encoder,
    tokenizer,
    scheduler,
    latents: Latents,
    labels: torch.Tensor,
    cfg: dict,
    gen: torch.Generator,
    log=print,
) -> dict:
    """Text-conditioned epsilon-prediction DDPM training of the UNet and the text encoder together."""
    ids = tokenizer(
        captions(), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids  # exactly as the pipeline tokenises
    steps = cfg["unet_steps"]
    opt = _unet_optimizer(unet, text_encoder, cfg)
    params = [p for g in opt.param_groups for p in g["params"]]
    sched = _schedule(opt, steps)
    probe = (latents.mean[:256] * latents.scaling, labels[:256])  # fixed latents for the conditioning gap
    unet.train()
    text_encoder.train()
    loss_avg, gap = None, float("nan")
    for step in range(steps):
        loss = _unet_loss(unet, text_encoder, ids, scheduler, latents, labels, cfg, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        if step % 100 == 0 or step == steps - 1:
            gap = conditioning_gap(unet, text_encoder, ids, scheduler, *probe)
            log(f"unet step {step:5d}  loss {loss_avg:.4f}  conditioning gap {gap:+.4f}")
    unet.eval()
    text_encoder.eval()
    return {"unet_loss": loss_avg, "conditioning_gap": gap}


def pretrain(out_dir: str | Path, seed: int = 0, log=print, **overrides) -> dict:
    """Build, train and save the tiny base model; returns its statistics (the stage records them).
    `overrides` replace TRAIN's values."""
    cfg = {**TRAIN, **overrides}
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)  # fail loudly if an op has no deterministic kernel
    try:
        return _pretrain(Path(out_dir), seed, cfg, log)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def _pretrain(out_dir: Path, seed: int, cfg: dict, log) -> dict:
    t0 = time.time()
    gen = torch.Generator().manual_seed(seed)
    images, labels = render_corpus(seed, cfg["n_images"])
    t_render = time.time() - t0
    log(f"rendered {len(images)} digits in {t_render:.1f}s")
    unet, vae, text_encoder, tokenizer = build_models(seed, out_dir / "tokenizer")
    mse = train_vae(vae, images, cfg["vae_steps"], cfg["vae_batch"], cfg["vae_lr"], cfg["kl_weight"], gen, log)
    t_vae = time.time() - t0 - t_render
    unscaled = Latents.encode(vae, images, batch=256)
    scaling = latent_scaling_factor(unscaled, gen)
    vae.register_to_config(scaling_factor=scaling)  # the pipeline divides latents by it before decoding
    latents = Latents(unscaled.mean, unscaled.std, scaling)
    log(f"vae trained in {t_vae:.1f}s, latent scaling factor {scaling:.4f}")
    t1 = time.time()
    scheduler = noise_schedule()
    result = train_unet(unet, text_encoder, tokenizer, scheduler, latents, labels, cfg, gen, log)
    t_unet = time.time() - t1
    save_pipeline(out_dir, unet, vae, text_encoder, tokenizer, scheduler)
    stats = {
        "seed": seed,
        **cfg,
        "params": {"unet": n_params(unet), "vae": n_params(vae), "text_encoder": n_params(text_encoder)},
        "vocab_size": len(tokenizer),
        "vae_mse": mse,
        **result,
        "scaling_factor": scaling,
        "seconds": {
            "render": round(t_render, 1),
            "vae": round(t_vae, 1),
            "unet": round(t_unet, 1),
            "total": round(time.time() - t0, 1),
        },
        "torch_threads": torch.get_num_threads(),
    }
    # Not written into out_dir: the timings would make the saved model differ between identical runs.
    log(f"saved to {out_dir} in {stats['seconds']['total']}s total")
    return stats
