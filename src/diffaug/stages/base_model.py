"""Stage `base_model`: models/base/source.json names the base model; the built-in one is trained here.

- `builtin:tiny`: a tiny Stable-Diffusion-architecture model pretrained by this project on printed
  digits (not on the experiment's data), saved in models/base/pipeline.
- a hub id: downloaded into the Hugging Face cache (not into DVC) and pinned to its commit.
- a local diffusers pipeline folder: copied into models/base/pipeline.
"""

import shutil
import time
from pathlib import Path

from diffaug import paths
from diffaug.cli import run
from diffaug.io import atomic_dir, write_json
from diffaug.params import load_params
from diffaug.paths import BASE


def main() -> None:
    params = load_params().base
    start, metrics = time.perf_counter(), {}
    with atomic_dir(BASE) as out:
        if params.model == "builtin:tiny":
            from diffaug.diffusion.tiny.pretrain import pretrain

            report = pretrain(out / "pipeline", seed=params.seed, unet_steps=params.tiny_steps)
            metrics = {
                "unet_loss": round(report["unet_loss"], 6),
                "conditioning_gap": round(report["conditioning_gap"], 6),
            }
            report.pop("seconds")
            source = {"model": params.model, "revision": None, "commit": None, "training": report}
        elif Path(params.model).is_dir():  # a diffusers pipeline folder of your own
            shutil.copytree(params.model, out / "pipeline")
            source = {"model": params.model, "revision": None, "commit": None}
        else:
            from diffaug.diffusion.hub import resolve

            commit, _ = resolve(params.model, params.revision)
            source = {"model": params.model, "revision": params.revision, "commit": commit}
        write_json(out / "source.json", source)
    seconds = round(time.perf_counter() - start, 1)
    write_json(paths.metrics("base_model"), {"model": params.model, "seconds": seconds, **metrics})
    print(
        f"base_model: {params.model} ready in {time.perf_counter() - start:.0f} s"
        + (f" (commit {source['commit']})" if source["commit"] else "")
    )


if __name__ == "__main__":
    run(main)
