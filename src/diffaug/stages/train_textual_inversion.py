"""Stage `train_textual_inversion@<class>`: models/base + data/original/<class> ->
models/textual_inversion/<class>/learned_embeds.safetensors (loadable by `pipe.load_textual_inversion`)."""

import sys

import torch
from accelerate import PartialState

from diffaug import paths
from diffaug.cli import run
from diffaug.diffusion.finetune import class_label, load_pixels, native_resolution, pick_instances
from diffaug.diffusion.loading import fingerprint, load_pipeline, read_source
from diffaug.diffusion.textual_inversion import EMBEDS_FILE, expand_templates, save_embeds, train_textual_inversion
from diffaug.diffusion.tuning import finetune_checkpoints
from diffaug.io import atomic_dir, write_json
from diffaug.params import load_params
from diffaug.paths import ORIGINAL


def main() -> None:
    params = load_params()
    label = class_label(sys.argv[1], params.classes)
    ti = params.textual_inversion
    files = pick_instances(ORIGINAL / label, ti.images, ti.seed, label)
    source = read_source()
    pipe = load_pipeline(source, torch.device("cpu"), torch.float32, "dpm++")
    resolution = ti.resolution or native_resolution(pipe)
    # Keyed by the params, images and base model: a rerun after a kill resumes, any other run starts afresh.
    checkpoints = finetune_checkpoints("textual_inversion", label, ti, files, fingerprint(source))
    record, learned = train_textual_inversion(pipe, load_pixels(files, resolution), label, ti, checkpoints=checkpoints)
    token = record.pop("token")
    if not PartialState().is_main_process:  # under `accelerate launch` one process writes
        return
    trained = {
        "method": "textual_inversion",
        "class": label,
        "token": token,
        "num_vectors": ti.num_vectors,
        "init_word": record.pop("init_word"),
        "templates": len(expand_templates(ti.templates)),
        "images": [f.name for f in files],
        "steps": ti.steps,
        "lr": record["lr"],
        "batch_size": ti.batch_size,
        "resolution": resolution,
        "base": fingerprint(source),
        "final_loss": record["final_loss"],
    }
    save(label, token, learned, trained, {**record, "steps": ti.steps})
    checkpoints.clear()  # the embedding is in place: a rerun is DVC's business now
    print(f"train_textual_inversion {label}: {token} learned, loss {record['final_loss']}")


def save(label: str, token: str, learned: torch.Tensor, trained: dict, record: dict) -> None:
    """models/textual_inversion/<class> (the embedding and trained.json) and its metrics."""
    with atomic_dir(paths.finetuned("textual_inversion", label)) as tmp:
        save_embeds(tmp / EMBEDS_FILE, token, learned)
        write_json(tmp / "trained.json", trained)
    write_json(
        paths.metrics(f"textual_inversion/{label}"),
        {**{k: v for k, v in record.items() if k != "cost"}, **record["cost"]},
    )


if __name__ == "__main__":
    run(main)
