"""A tiny Stable-Diffusion-architecture text-to-image model that draws digits, pretrained on CPU.

Everything the model needs is made here: a CLIP BPE vocabulary (written, not downloaded), a corpus of
printed digits rendered with the font that ships inside Pillow, and the weights (trained from scratch
in a few minutes). The result is saved as a regular `diffusers.StableDiffusionPipeline` folder, so the
rest of the project (generation, DreamBooth, Textual Inversion) treats it like any SD checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter, ImageFont

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
IMAGE_SIZE = 32
PROMPT_TEMPLATE = "a photo of the digit {}"

# Whole words the BPE vocabulary merges into single tokens. Prompt words of the project's stages
# (vanilla, DreamBooth "a photo of sks seven", Textual Inversion templates) plus digit words; any other
# text still tokenises, falling back to shorter pieces and finally to byte-level characters.
VOCAB_WORDS = DIGIT_WORDS + [
    "a", "an", "the", "of", "photo", "picture", "image", "rendering", "drawing", "digit", "digits",
    "number", "handwritten", "written", "printed", "sks", "in", "on", "with", "and", "style", "black",
    "white", "dark", "small", "large", "clean", "cropped", "close", "up", "good", "bad", "my", "cool",
    "bright", "dirty", "nice", "weird", "rendition",
]


# ----------------------------------------------------------------------------------------------
# Corpus: rendered digits
# ----------------------------------------------------------------------------------------------

# Ranges of the random rendering. Chosen so a classifier trained on scikit-learn's handwritten
# digits recognises the renders as well as possible (see REPORT.md): tall, narrow, bold, blurred.
RENDER = {
    "stroke": (0, 4),           # extra stroke width in px at font size 64 (Aileron Regular is thin)
    "shear": 0.25,              # +- horizontal shear (slant)
    "rotate": 10.0,             # +- degrees
    "height": (0.85, 1.0),      # glyph height / frame
    "aspect": (0.65, 1.05),     # factor on the glyph's own width/height
    "max_width": 0.8,           # glyph width / frame, at most
    "low_res": (8, 8, 8, 12, 16, 32),  # intermediate resolution, drawn uniformly (8 = like the scans)
    "blur_p": 0.3,              # share of images with an extra slight Gaussian blur
    "normalise": True,          # stretch ink so its darkest pixel is black, as in the scans
}

_FONT_CACHE: dict[int, ImageFont.FreeTypeFont] = {}


def _font(size: int) -> ImageFont.FreeTypeFont:
    # load_default(size=...) is Pillow's built-in scalable Aileron Regular (Pillow >= 10.1, FreeType):
    # no font file needed on any machine.
    if size not in _FONT_CACHE:
        font = ImageFont.load_default(size=size)
        if not isinstance(font, ImageFont.FreeTypeFont):
            raise RuntimeError("Pillow was built without FreeType: the scalable default font is missing")
        _FONT_CACHE[size] = font
    return _FONT_CACHE[size]


def _glyph(rng: np.random.Generator, digit: int) -> Image.Image:
    """The digit as tightly cropped ink (L mode, 255 = ink) at a random weight, slant and rotation."""
    size = 64
    stroke = int(rng.integers(*RENDER["stroke"]))
    canvas = Image.new("L", (2 * size, 2 * size), 0)
    ImageDraw.Draw(canvas).text(
        (size // 2, size // 4), str(digit), font=_font(size), fill=255, stroke_width=stroke, stroke_fill=255
    )
    # Shear (slant) then rotate: handwriting leans, print doesn't.
    shear = rng.uniform(-RENDER["shear"], RENDER["shear"])
    canvas = canvas.transform(canvas.size, Image.AFFINE, (1, shear, -shear * size, 0, 1, 0), Image.BILINEAR)
    canvas = canvas.rotate(rng.uniform(-RENDER["rotate"], RENDER["rotate"]), Image.BILINEAR)
    return canvas.crop(canvas.getbbox())


def _position(rng: np.random.Generator, work: int, w: int, h: int) -> tuple[int, int]:
    """Top-left corner: mostly near the horizontal centre (like the scans), sometimes anywhere."""
    if rng.random() < 0.3:
        x = int(rng.integers(0, work - w + 1))
    else:
        x = (work - w) // 2 + int(rng.integers(-work // 16, work // 16 + 1))
    y = int(rng.integers(0, work - h + 1))
    return min(max(x, 0), work - w), y


def render_digit(rng: np.random.Generator, digit: int, size: int = IMAGE_SIZE) -> Image.Image:
    """One training image: dark ink on white, RGB, `size` x `size`.

    The glyph is stretched to fill most of the frame height, like scikit-learn's digits (whose source
    bitmaps were size-normalised): small glyphs were barely recognisable as those digits. Most
    images then go through a low-resolution intermediate (8-16 px, area-averaged, then bicubic up)
    to get the blur of an 8x8 scan upscaled to 32x32.
    """
    work = 4 * size  # draw at 4x, then reduce: smooth edges at any intermediate resolution
    glyph = _glyph(rng, digit)
    h = int(round(work * rng.uniform(*RENDER["height"])))
    aspect = glyph.width / glyph.height * rng.uniform(*RENDER["aspect"])
    w = int(round(min(work * RENDER["max_width"], max(work * 0.12, h * aspect))))
    glyph = glyph.resize((w, h), Image.BILINEAR)
    ink = Image.new("L", (work, work), 0)
    ink.paste(glyph, _position(rng, work, w, h))
    low = int(rng.choice(RENDER["low_res"]))
    ink = ink.resize((low, low), Image.BOX)  # area average = the scans' ink counts per cell
    if RENDER["normalise"]:
        # Thin strokes average to gray at 8 px; the scans' strokes are black at their core.
        peak = max(ink.getextrema()[1], 1)
        ink = Image.eval(ink, lambda v: min(255, round(v * 255 / peak)))
    if low < size:
        ink = ink.resize((size, size), Image.BICUBIC)
    if rng.random() < RENDER["blur_p"]:
        ink = ink.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    gray = Image.eval(ink, lambda v: 255 - v)  # dark ink on a white background
    return gray.convert("RGB")


# ----------------------------------------------------------------------------------------------
# Tokenizer: a CLIP byte-level BPE vocabulary written from scratch
# ----------------------------------------------------------------------------------------------

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# Prompt length in tokens (CLIP's is 77). Short on purpose: the UNet's cross-attention and the text
# encoder's causal attention average over all positions at first, and 60-odd padding positions dilute
# the one token that names the digit; with 77 the prompt was ignored for the first ~500 steps.
# 16 holds every Textual Inversion template ("a close-up photo of the <x>" is 10 with BOS/EOS).
MAX_TOKENS = 16


def _byte_chars() -> list[str]:
    """CLIP/GPT-2's printable stand-in for each of the 256 bytes (tokenizers' ByteLevel uses the same)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply BPE merges the way the tokenizer does: repeatedly merge the best-ranked adjacent pair."""
    while len(symbols) > 1:
        pairs = [(ranks.get(p, math.inf), i) for i, p in enumerate(zip(symbols, symbols[1:]))]
        rank, i = min(pairs)
        if rank == math.inf:
            break
        symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2:]
    return symbols


def bpe_vocabulary(words: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Vocabulary (token list, in id order) and merges so that each of `words` is one token.

    Layout as in CLIP: 256 byte characters, the same with the end-of-word mark `</w>`, merged tokens,
    then the two special tokens. Merges are added word by word, each after simulating the merges so far:
    a new merge ranks below all earlier ones, so it never changes how an earlier word is split.
    """
    base = _byte_chars()
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        chars = [base[b] for b in word.encode("utf-8")]
        symbols = _bpe(chars[:-1] + [chars[-1] + "</w>"], ranks)
        while len(symbols) > 1:  # merge left to right until the word is whole
            pair = (symbols[0], symbols[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            symbols = _bpe(symbols, ranks)
    vocab = base + [c + "</w>" for c in base] + [a + b for a, b in merges] + [BOS, EOS]
    return vocab, merges


def build_tokenizer(folder: str | os.PathLike, words: list[str] = VOCAB_WORDS):
    """Write vocab.json and merges.txt (CLIP's file formats) to `folder` and load them as a CLIPTokenizer."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = bpe_vocabulary(words)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tokenizer = CLIPTokenizer.from_pretrained(str(folder), model_max_length=MAX_TOKENS)
    for word in words:  # the real tokenizer must agree with our simulation
        ids = tokenizer(word, add_special_tokens=False).input_ids
        assert len(ids) == 1, f"{word!r} -> {tokenizer.convert_ids_to_tokens(ids)}"
    return tokenizer


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------

# Sizes of the three networks. The VAE reduces 32x32x3 to 8x8x4 (factor 4: three blocks), so the
# UNet works on 64 latent pixels; that is what makes CPU pretraining take minutes.
ARCH = {
    "vae_channels": (8, 16, 32),  # the 32x32 level dominates the cost: keep it narrow
    "latent_channels": 4,
    "unet_channels": (32, 64, 64),
    "unet_attn": (False, True, True),  # cross-attention per level (8x8, 4x4, 2x2 latent pixels)
    "unet_heads": 4,          # diffusers' `attention_head_dim` is really the number of heads
    "text_hidden": 64,
    "text_layers": 2,
    "text_heads": 4,
    "groups": 8,              # GroupNorm groups (must divide every channel count)
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
            force_upcast=False,             # fp32 throughout; SD's upcast exists for fp16 weights
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


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------

def captions() -> list[str]:
    """The training captions: one per digit, then the empty prompt (for classifier-free guidance)."""
    return [PROMPT_TEMPLATE.format(w) for w in DIGIT_WORDS] + [""]


def render_corpus(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` rendered digits (balanced classes, shuffled) as a float tensor in [-1, 1] and their labels."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10)
    pixels = np.stack([np.asarray(render_digit(rng, int(c))) for c in labels])
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return images, torch.from_numpy(labels)


def _lr_schedule(opt, steps: int, warmup: int):
    # Linear warm-up then cosine decay to zero: short runs end on their best weights.
    def factor(i: int) -> float:
        if i < warmup:
            return (i + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (i - warmup) / max(1, steps - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_vae(vae, images: torch.Tensor, steps: int, batch: int, lr: float, kl_weight: float,
              gen: torch.Generator, log=print) -> float:
    """Reconstruction (MSE) plus a small KL term, as in SD's VAE minus its perceptual and GAN losses.

    The KL term keeps the latent smooth and near unit scale, which the diffusion model needs; it is
    small so reconstructions stay sharp. Returns the final reconstruction MSE (on [-1, 1] pixels).
    """
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr, weight_decay=0.0)
    sched = _lr_schedule(opt, steps, warmup=max(1, steps // 20))
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


@torch.no_grad()
def encode_corpus(vae, images: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every image, computed once: the UNet then trains without the VAE."""
    means, stds = [], []
    for i in range(0, len(images), batch):
        d = vae.encode(images[i:i + batch]).latent_dist
        means.append(d.mean)
        stds.append(d.std)
    return torch.cat(means), torch.cat(stds)


def latent_scaling_factor(mean: torch.Tensor, std: torch.Tensor, gen: torch.Generator) -> float:
    """1 / std of sampled latents: SD's recipe (its 0.18215) so the diffusion sees unit-variance latents."""
    z = mean + std * torch.randn(mean.shape, generator=gen)
    return float(1.0 / z.std())


class EMA:
    """Exponential moving average of parameters: smoother weights than the last step's."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int):
        d = min(self.decay, (1 + step) / (10 + step))  # short warm-up: early weights are poor
        for s, p in zip(self.shadow, model.parameters()):
            s.lerp_(p.detach(), 1 - d)

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module):
        for s, p in zip(self.shadow, model.parameters()):
            p.copy_(s)


def _encode_captions(text_encoder, ids: torch.Tensor, cap: torch.Tensor) -> torch.Tensor:
    """Text embeddings for caption indices `cap`, encoding each distinct caption once (11 rows, not a batch).

    Rows are picked by a one-hot matmul, not by indexing: the backward of indexing accumulates with
    atomics across threads, which made runs with 2 threads differ from each other.
    """
    encoded = text_encoder(ids)[0]
    pick = F.one_hot(cap, len(ids)).to(encoded.dtype)
    return (pick @ encoded.flatten(1)).view(len(cap), *encoded.shape[1:])


def _noisy_batch(scheduler, z0: torch.Tensor, gen: torch.Generator, t_range=None):
    noise = torch.randn(z0.shape, generator=gen)
    lo, hi = t_range or (0, scheduler.config.num_train_timesteps)
    t = torch.randint(lo, hi, (len(z0),), generator=gen)
    return scheduler.add_noise(z0, noise, t), noise, t


@torch.no_grad()
def conditioning_gap(unet, text_encoder, ids, scheduler, z0: torch.Tensor, labels: torch.Tensor,
                     seed: int = 0) -> float:
    """Loss with wrong digit captions minus loss with the right ones, on fixed noisy latents.

    Near 0: the UNet ignores the prompt (it then draws random digits); clearly > 0: it follows it.
    """
    zt, noise, t = _noisy_batch(scheduler, z0, torch.Generator().manual_seed(seed), (200, 800))
    losses = []
    for cap in (labels, (labels + 1) % 10):
        pred = unet(zt, t, _encode_captions(text_encoder, ids, cap)).sample
        losses.append(F.mse_loss(pred, noise).item())
    return losses[1] - losses[0]


def train_unet(unet, text_encoder, tokenizer, scheduler, latents: tuple[torch.Tensor, torch.Tensor],
               scaling: float, labels: torch.Tensor, cfg: dict, gen: torch.Generator, log=print) -> dict:
    """Text-conditioned epsilon-prediction DDPM training of the UNet and the text encoder together."""
    mean, std = latents
    ids = tokenizer(captions(), padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids  # exactly as the pipeline tokenises
    empty, steps, batch = len(captions()) - 1, cfg["unet_steps"], cfg["unet_batch"]
    opt = torch.optim.AdamW([
        {"params": unet.parameters(), "lr": cfg["unet_lr"]},
        # The text encoder starts from random too; a higher rate makes it tell the digits apart sooner.
        {"params": text_encoder.parameters(), "lr": cfg["unet_lr"] * cfg["text_lr_mult"]},
    ], weight_decay=1e-2)
    params = [p for g in opt.param_groups for p in g["params"]]
    sched = _lr_schedule(opt, steps, warmup=max(1, steps // 20))
    emas = [EMA(m, cfg["ema_decay"]) for m in (unet, text_encoder)] if cfg["ema_decay"] else []
    probe = (mean[:256] * scaling, labels[:256])  # fixed latents for the conditioning-gap diagnostic
    unet.train()
    text_encoder.train()
    loss_avg, gap = None, float("nan")
    for step in range(steps):
        idx = torch.randint(0, len(labels), (batch,), generator=gen)
        z0 = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)) * scaling
        cap = labels[idx].clone()
        cap[torch.rand(batch, generator=gen) < cfg["caption_dropout"]] = empty
        zt, noise, t = _noisy_batch(scheduler, z0, gen)
        loss = F.mse_loss(unet(zt, t, _encode_captions(text_encoder, ids, cap)).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        for ema, model in zip(emas, (unet, text_encoder)):
            ema.update(model, step)
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        if step % 100 == 0 or step == steps - 1:
            gap = conditioning_gap(unet, text_encoder, ids, scheduler, *probe)
            log(f"unet step {step:5d}  loss {loss_avg:.4f}  conditioning gap {gap:+.4f}")
    for ema, model in zip(emas, (unet, text_encoder)):
        ema.copy_to(model)
    unet.eval()
    text_encoder.eval()
    return {"unet_loss": loss_avg, "conditioning_gap": gap}


def training_scheduler():
    """SD's noise schedule (scaled_linear, 1000 steps, epsilon prediction)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                         beta_end=0.012, prediction_type="epsilon", clip_sample=False,
                         steps_offset=1)  # SD v1's value; the pipeline warns about 0


def save_pipeline(out_dir: str | os.PathLike, unet, vae, text_encoder, tokenizer, scheduler):
    """Save as a standard StableDiffusionPipeline folder (safetensors), sampling with DPM-Solver++."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=DPMSolverMultistepScheduler.from_config(scheduler.config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(str(out_dir), safe_serialization=True)
    return pipe


# Defaults of pretrain(): about 4 minutes on this 2-core machine (1 torch thread, other core busy).
TRAIN = {
    "n_images": 6000,
    "vae_steps": 300,
    "vae_batch": 32,
    "vae_lr": 3e-3,
    "kl_weight": 1e-3,
    "unet_steps": 800,
    "unet_batch": 32,          # more, smaller steps: the prompt is followed sooner
    "unet_lr": 2e-3,
    "text_lr_mult": 0.2,       # a fast-moving text encoder collapsed to one output for all prompts
    "caption_dropout": 0.12,
    "ema_decay": 0.0,          # EMA (e.g. 0.995) did not help in runs this short
}


def pretrain(out_dir: str | os.PathLike, seed: int = 0, log=print, **overrides) -> dict:
    """Build, train and save the tiny base model; returns its statistics (the stage records them).

    Deterministic for a fixed seed, machine and torch thread count (1 and 2 threads give different,
    each reproducible, weights): every random draw comes from seeded generators, and torch's
    deterministic-algorithms mode is on while training. `overrides` replace TRAIN's values.
    """
    cfg = {**TRAIN, **overrides}
    out_dir = Path(out_dir)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)  # fail loudly if an op has no deterministic kernel
    try:
        return _pretrain(out_dir, seed, cfg, log)
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
    mean, std = encode_corpus(vae, images)
    scaling = latent_scaling_factor(mean, std, gen)
    vae.register_to_config(scaling_factor=scaling)  # the pipeline divides latents by it before decoding
    scheduler = training_scheduler()
    log(f"vae trained in {t_vae:.1f}s, latent scaling factor {scaling:.4f}")
    t1 = time.time()
    result = train_unet(unet, text_encoder, tokenizer, scheduler, (mean, std), scaling, labels, cfg, gen, log)
    t_unet = time.time() - t1
    save_pipeline(out_dir, unet, vae, text_encoder, tokenizer, scheduler)
    stats = {
        "seed": seed, **cfg,
        "params": {"unet": n_params(unet), "vae": n_params(vae), "text_encoder": n_params(text_encoder)},
        "vocab_size": len(tokenizer), "vae_mse": mse, **result, "scaling_factor": scaling,
        "seconds": {"render": round(t_render, 1), "vae": round(t_vae, 1), "unet": round(t_unet, 1),
                    "total": round(time.time() - t0, 1)},
        "torch_threads": torch.get_num_threads(),
    }
    # Not written into out_dir: the timings would make the saved model differ between identical runs.
    log(f"saved to {out_dir} in {stats['seconds']['total']}s total")
    return stats
