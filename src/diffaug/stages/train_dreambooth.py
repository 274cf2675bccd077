"""Stage `train_dreambooth@<class>`: models/base + data/original/<class> -> models/dreambooth/<class>.

Multi-GPU: `dreambooth.launcher: "accelerate launch --num_processes N"` trains with data parallelism.
"""

import sys

import torch
from accelerate import PartialState

from diffaug import paths
from diffaug.cli import run
from diffaug.diffusion.dreambooth import prior_images, save_dreambooth, train_dreambooth
from diffaug.diffusion.finetune import check_8bit_adam, class_label, load_pixels, native_resolution, pick_instances
from diffaug.diffusion.loading import fingerprint, load_pipeline, read_source
from diffaug.diffusion.tuning import finetune_checkpoints
from diffaug.io import atomic_dir, sha256_tree, write_json
from diffaug.params import DreamBooth, load_params
from diffaug.paths import ORIGINAL


def main() -> None:
    params = load_params()
    label = class_label(sys.argv[1], params.classes)
    d = params.dreambooth
    check_8bit_adam(d.use_8bit_adam, d.device)
    files = pick_instances(ORIGINAL / label, d.instance_images, d.seed, label)
    source = read_source()
    pipe = load_pipeline(source, torch.device("cpu"), torch.float32, "dpm++")  # trained in fp32 (+ autocast)
    resolution = d.resolution or native_resolution(pipe)
    prompt, class_prompt = d.prompt.format(label), d.class_prompt.format(label)
    prior = None
    if d.prior_preservation:
        with PartialState().main_process_first():  # one process draws the prior images, the others read them
            prior = load_pixels(prior_images(source, class_prompt, label, d, resolution), resolution)
    # Keyed by the params, images and base model: a rerun after a kill resumes, any other run starts afresh.
    checkpoints = finetune_checkpoints("dreambooth", label, d, files, fingerprint(source))
    record = train_dreambooth(
        pipe, load_pixels(files, resolution), prompt, prior, class_prompt, d, checkpoints=checkpoints
    )
    if not PartialState().is_main_process:  # under `accelerate launch` one process writes
        return
    trained = describe(d, label, [f.name for f in files], resolution, prior is not None, record, fingerprint(source))
    size = save(pipe, d, label, trained, record)
    checkpoints.clear()  # the model is in place: a rerun is DVC's business now
    print(
        f"train_dreambooth {label}: instance loss {record['instance_loss_before']} -> "
        f"{record['instance_loss_after']}, {size / 2**20:.1f} MB"
    )


def describe(
    d: DreamBooth, label: str, files: list[str], resolution: int, prior: bool, record: dict, base: str
) -> dict:
    """What was trained (trained.json): deterministic content only (no wall time), so an identical
    retrain changes nothing downstream."""
    return {
        "method": "dreambooth",
        "class": label,
        "mode": d.mode,
        "prompt": d.prompt.format(label),
        "class_prompt": d.class_prompt.format(label),
        "prior_preservation": d.prior_preservation,
        "class_images": d.class_images if prior else 0,
        "instance_images": files,
        "train_text_encoder": d.train_text_encoder,
        "steps": d.steps,
        "lr": record["lr"],
        "batch_size": d.batch_size,
        "resolution": resolution,
        "base": base,
        **{k: record[k] for k in ("final_loss", "instance_loss_before", "instance_loss_after")},
        **({"lora_rank": d.lora_rank, "lora_targets": d.lora_targets} if d.mode == "lora" else {}),
    }


def save(pipe, d: DreamBooth, label: str, trained: dict, record: dict) -> int:
    """models/dreambooth/<class> (the weights and trained.json) and its metrics; returns the model's bytes."""
    out = paths.finetuned("dreambooth", label)
    with atomic_dir(out) as tmp:
        save_dreambooth(pipe, tmp, d)
        write_json(tmp / "trained.json", trained)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    write_json(
        paths.metrics(f"dreambooth/{label}"),
        {
            **{k: v for k, v in record.items() if k != "cost"},
            **record["cost"],
            "steps": d.steps,
            "output_mb": round(size / 2**20, 2),
            "weights_sha256": sha256_tree(out)[:16],
        },
    )
    return size


if __name__ == "__main__":
    run(main)
