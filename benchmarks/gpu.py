"""Speed on the current device of everything that needs a GPU, with no download.

    PYTHONPATH=src python benchmarks/gpu.py [--out FILE] [--smoke] [--device auto]

Pipelines are built with random weights from SD 1.5's real architecture (its UNet, VAE and CLIP text
encoder configs are written below) and torchvision's ResNet-18 (weights=None): speed does not depend
on the weights. It measures, through the project's own code paths:
  - txt2img images/s at 512 px: batch 1, 8 and the largest that fits (up to --max-batch), 25
    DPM-Solver++ steps, guidance 7.5 (CFG batched), bf16/fp16, SDPA; on CUDA also with torch.compile;
    and at batch 8 including PNG writing, serial (before issue 15) and overlapped;
  - DreamBooth steps/s (full and LoRA, each with and without gradient checkpointing; prior
    preservation on, the paper profile's batch size);
  - Textual Inversion steps/s;
  - classifier training images/s at 224 px, old data path (benchmarks/baseline.py) and new, for
    standard (crop + flip) and RandAugment augmentation;
and the peak GPU memory of each. `--smoke` runs all of it at tiny sizes (on the CPU in under 2
minutes): the test suite runs that. `--out` writes the JSON; a table is printed.
Generation is timed after a warm-up batch, the classifier from its second epoch (the first autotunes
and compiles); fine-tuning rates include the first step: enough steps are run for it not to matter.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from diffaug.classify.model import build_model
from diffaug.classify.train import fit, seed_everything
from diffaug.device import device_name, pick_device
from diffaug.diffusion.jobs import Settings, fill_cache, plan, run_batch
from diffaug.diffusion.loading import pick_dtype, set_scheduler, speed_up
from diffaug.legacy import old_fit_epochs, old_generate

REPO = Path(__file__).resolve().parents[1]

# Stable Diffusion v1.5's configs (unet/, vae/, text_encoder/ config.json of the hub repository).
SD15 = {
    "unet": dict(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
    ),
    "vae": dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=2,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=32,
        sample_size=512,
        scaling_factor=0.18215,
    ),
    "text": dict(
        vocab_size=49408,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        projection_dim=768,
    ),
}
# The same shapes shrunk until a CPU runs them in seconds (--smoke).
SMOKE = {
    "unet": dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    ),
    "vae": dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8,
        sample_size=16,
        scaling_factor=0.18215,
    ),
    "text": dict(
        vocab_size=None,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        projection_dim=32,
    ),
}
# Sizes of each measurement: (real, smoke).
SIZES = {
    "resolution": (512, 16),
    "steps": (25, 2),
    "batches": ((1, 8), (1, 2)),
    "rounds": (3, 1),
    "dreambooth_steps": (40, 1),
    "ti_steps": (60, 1),
    "finetune_resolution": (512, 16),
    "classifier_images": (2048, 16),
    "classifier_size": (224, 16),
    "classifier_batch": (512, 8),
    "classifier_epochs": (3, 1),
}


def tokenizer(folder: Path, vocab_size: int | None):
    """A CLIP BPE tokenizer of the built-in model's words, padded with unused tokens to `vocab_size`
    so the special tokens get CLIP's ids (49406, 49407) and the embedding matrix SD's shape."""
    from transformers import CLIPTokenizer

    from diffaug.diffusion.tiny.tokenizer import VOCAB_WORDS, bpe_vocabulary

    vocab, merges = bpe_vocabulary(VOCAB_WORDS)
    if vocab_size:
        vocab = vocab[:-2] + [f"<unused{i}>" for i in range(vocab_size - len(vocab))] + vocab[-2:]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=77)


def build_pipeline(arch: dict, folder: Path):
    """A StableDiffusionPipeline of `arch` with random weights (seeded), in float32 on the CPU."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from diffaug.diffusion.tiny.model import noise_schedule

    torch.manual_seed(0)
    tok = tokenizer(folder, arch["text"]["vocab_size"])
    text = CLIPTextConfig(
        **{**arch["text"], "vocab_size": arch["text"]["vocab_size"] or len(tok)},
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(**arch["vae"]),
        text_encoder=CLIPTextModel(text),
        tokenizer=tok,
        unet=UNet2DConditionModel(**arch["unet"]),
        scheduler=noise_schedule(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def peak_gb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def guarded(device: torch.device, settings: dict, fn: Callable[[], dict]) -> dict:
    """One measurement: its settings, its numbers and peak memory, or the error that stopped it."""
    free(device)
    try:
        return {**settings, **fn(), "peak_memory_gb": peak_gb(device)}
    except Exception as e:  # one failed row (out of memory, a missing package) must not lose the rest
        return {**settings, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    finally:
        free(device)


def generation(template, device: torch.device, size: int, max_batch: int) -> list[dict]:
    dtype = pick_dtype(device)
    res, steps, rounds = SIZES["resolution"][size], SIZES["steps"][size], SIZES["rounds"][size]
    settings = Settings(
        model="random",
        scheduler="dpm++",
        steps=steps,
        guidance=7.5,
        negative_prompt="",
        height=res,
        width=res,
        save_size=None,
        dtype=str(dtype).removeprefix("torch."),
    )
    jobs = plan({"seven": ["a photo of the digit seven"]}, max_batch * (rounds + 1), 0)
    rows = []

    def measure(pipe, batch: int) -> dict:
        run_batch(pipe, jobs[:batch], settings)  # warm-up: allocations, cuDNN autotuning, compiling
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for r in range(rounds):
            run_batch(pipe, jobs[(r + 1) * batch : (r + 2) * batch], settings)
        seconds = time.perf_counter() - start
        return {
            "images_per_second": round(batch * rounds / seconds, 3),
            "seconds_per_image": round(seconds / (batch * rounds), 3),
        }

    for compiled in [False, True] if device.type == "cuda" else [False]:
        pipe = copy.deepcopy(template)
        if dtype != torch.float32:
            pipe.to(dtype=dtype)
        set_scheduler(pipe, "dpm++")
        speed_up(pipe, device, max_batch, compile_unet=compiled, resolution=res)
        base = {
            "resolution": res,
            "steps": steps,
            "scheduler": "dpm++",
            "guidance": 7.5,
            "dtype": settings.dtype,
            "attention": "sdpa",
            "compile": compiled,
        }
        batches = list(SIZES["batches"][size])
        rows += [guarded(device, {**base, "batch_size": b}, lambda b=b: measure(pipe, b)) for b in batches]
        if not compiled:  # the largest batch that fits: doubling from 2 x the last until out of memory
            fitted, b = [], 2 * batches[-1]
            while b <= max_batch:
                row = guarded(device, {**base, "batch_size": b}, lambda: measure(pipe, b))
                if "error" in row:
                    break
                fitted.append(row)
                b *= 2
            if fitted:  # "max_batch_reached": --max-batch stopped the search, not the memory
                fitted[-1].update(largest_that_fits=True, max_batch_reached=b > max_batch)
            rows += fitted
            # Generation with its PNG writing: on the main thread between batches (before issue 15)
            # or in threads overlapping the next batch (now).
            b = batches[-1]
            for writing, fn in (("serial", old_generate), ("overlapped", None)):

                def write_run(fn=fn) -> dict:
                    with tempfile.TemporaryDirectory() as cache:
                        start = time.perf_counter()
                        if fn:
                            fn(pipe, jobs[: b * rounds], settings, b, Path(cache))
                        else:
                            fill_cache(pipe, jobs[: b * rounds], settings, b, cache=Path(cache))
                        seconds = time.perf_counter() - start
                    return {"images_per_second": round(b * rounds / seconds, 3)}

                rows.append(guarded(device, {**base, "batch_size": b, "png_writing": writing}, write_run))
        del pipe
    if device.type != "cuda":
        rows.append({"compile": True, "skipped": "speed_up compiles the UNet on CUDA only"})
    return sorted(rows, key=lambda r: (r.get("compile", False), r.get("batch_size", 0)))


def paper(name: str):
    """A section of the paper profile (what a real run uses): profiles/paper.yaml merged onto params.yaml."""
    from diffaug.study.profiles import merge_profile

    return getattr(merge_profile("paper", REPO)[1], name)


def finetune_params(name: str, device: torch.device, size: int, **update):
    """The paper profile's settings, at this benchmark's steps and device."""
    section = paper(name)
    steps = SIZES["dreambooth_steps" if name == "dreambooth" else "ti_steps"][size]
    return section.model_copy(
        update=dict(
            steps=steps,
            device=str(device),
            mixed_precision="auto",
            resolution=SIZES["finetune_resolution"][size],
            **update,
        )
    )


def dreambooth(template, device: torch.device, size: int) -> list[dict]:
    from diffaug.diffusion.dreambooth import train_dreambooth

    res = SIZES["finetune_resolution"][size]
    rows = []
    for mode in ("full", "lora"):
        for checkpointing in (False, True):
            params = finetune_params("dreambooth", device, size, mode=mode, gradient_checkpointing=checkpointing)
            settings = {
                "mode": mode,
                "gradient_checkpointing": checkpointing,
                "resolution": res,
                "batch_size": params.batch_size,
                "prior_preservation": True,
                "steps": params.steps,
                "train_text_encoder": params.train_text_encoder,
            }

            def run(params=params) -> dict:
                pipe = copy.deepcopy(template)
                g = torch.Generator().manual_seed(0)
                instance = torch.rand((5, 3, res, res), generator=g) * 2 - 1
                prior = torch.rand((8, 3, res, res), generator=g) * 2 - 1
                record = train_dreambooth(
                    pipe, instance, "a photo of sks seven", prior, "a photo of seven", params, log=lambda m: None
                )
                return {"steps_per_second": record["cost"]["steps_per_second"], "seconds": record["cost"]["seconds"]}

            rows.append(guarded(device, settings, run))
    return rows


def textual_inversion(template, device: torch.device, size: int) -> list[dict]:
    from diffaug.diffusion.textual_inversion import train_textual_inversion

    res = SIZES["finetune_resolution"][size]
    params = finetune_params("textual_inversion", device, size)

    def run() -> dict:
        pipe = copy.deepcopy(template)
        pixels = torch.rand((5, 3, res, res), generator=torch.Generator().manual_seed(0)) * 2 - 1
        record, _ = train_textual_inversion(pipe, pixels, "seven", params, log=lambda m: None)
        return {"steps_per_second": record["cost"]["steps_per_second"], "seconds": record["cost"]["seconds"]}

    return [
        guarded(
            device,
            {
                "resolution": res,
                "batch_size": params.batch_size,
                "steps": params.steps,
                "num_vectors": params.num_vectors,
                "gradient_checkpointing": params.gradient_checkpointing,
            },
            run,
        )
    ]


def classifier(device: torch.device, size: int) -> list[dict]:
    n, side = SIZES["classifier_images"][size], SIZES["classifier_size"][size]
    batch, epochs = SIZES["classifier_batch"][size], SIZES["classifier_epochs"][size]
    g = torch.Generator().manual_seed(0)
    train = (
        torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=g),
        torch.randint(0, 10, (n,), generator=g),
    )
    none = (train[0][:0], train[1][:0])
    base = paper("train")
    rows = []
    for augment in ("standard", "randaugment"):
        paths = [("old", False), ("new", False)] + ([("new", True)] if device.type == "cuda" else [])
        for path, compiled in paths:
            cfg = base.model_copy(
                update=dict(
                    epochs=epochs,
                    batch_size=batch,
                    image_size=side,
                    augment=augment,
                    hflip=True,
                    compile=compiled,
                    device=str(device),
                )
            )

            def run(cfg=cfg, path=path) -> dict:
                gen = seed_everything(cfg.seed)
                model = build_model(10, "scratch", False)
                ends = [time.perf_counter()]

                def log(_):
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    ends.append(time.perf_counter())

                if path == "old":
                    old_fit_epochs(model, train, cfg, device, gen, log)
                else:
                    fit(model, train, none, cfg, device, gen, log)
                # The first epoch warms up (cuDNN autotuning, compiling): rated from the second on, if any.
                timed = ends[1:] if len(ends) > 2 else ends
                seconds = timed[-1] - timed[0]
                return {
                    "images_per_second": round(n * (len(timed) - 1) / seconds, 1),
                    "seconds": round(seconds, 2),
                    "epochs_timed": len(timed) - 1,
                }

            rows.append(
                guarded(
                    device,
                    {
                        "data_path": path,
                        "augment": augment,
                        "compile": compiled,
                        "image_size": side,
                        "batch_size": batch,
                        "images": n,
                        "epochs": epochs,
                        "amp": device.type == "cuda",
                    },
                    run,
                )
            )
    return rows


def table(results: dict) -> str:
    lines = [f"{results['device']} (torch {results['torch']}){' [smoke]' if results['smoke'] else ''}"]
    for key, rows in results.items():
        if not isinstance(rows, list):
            continue
        lines.append(f"\n{key}")
        for row in rows:
            rate = row.get("images_per_second", row.get("steps_per_second"))
            what = ", ".join(
                f"{k}={v}"
                for k, v in row.items()
                if k
                not in (
                    "images_per_second",
                    "steps_per_second",
                    "peak_memory_gb",
                    "seconds",
                    "seconds_per_image",
                    "error",
                    "skipped",
                )
            )
            tail = row.get("error") or row.get("skipped") or f"{rate}/s, peak {row.get('peak_memory_gb')} GB"
            lines.append(f"  {what}: {tail}")
    lines.append(f"\n{results['seconds']} s in all; per section: {results['section_seconds']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CPU, under 2 minutes)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-batch", type=int, default=64, help="largest generation batch tried")
    args = parser.parse_args()
    size = 1 if args.smoke else 0
    device = pick_device(args.device)
    max_batch = 4 if args.smoke else args.max_batch
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # what fp32 parts of a real run would use too
    results = {
        "device": device_name(device),
        "torch": torch.__version__,
        "smoke": args.smoke,
        "machine": platform.processor() or platform.machine(),
    }
    start, sections = time.perf_counter(), {}

    def timed(key: str, fn: Callable[[], list]) -> None:
        t = time.perf_counter()
        results[key] = fn()
        sections[key] = round(time.perf_counter() - t, 1)

    with tempfile.TemporaryDirectory() as tmp:
        template = build_pipeline(SMOKE if args.smoke else SD15, Path(tmp) / "tokenizer")
        timed("generate_images_per_second", lambda: generation(template, device, size, max_batch))
        timed("dreambooth_steps_per_second", lambda: dreambooth(template, device, size))
        timed("textual_inversion_steps_per_second", lambda: textual_inversion(template, device, size))
    timed("classifier_images_per_second", lambda: classifier(device, size))
    results["seconds"] = round(time.perf_counter() - start, 1)
    results["section_seconds"] = sections
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
