"""Stage `real@<source>`, for the sources of params.yaml's `sources.real`: data/pool (the held-out extra
real images `split` draws, split.pool_per_class a class) -> data/synthetic/<source>, a source like any
other, so `mix`, `measure` and the study treat the real control as they treat a synthetic source.

The images are byte copies (no re-encoding: a real image stays the file the scraper kept).
"""

import shutil
import sys
from pathlib import Path

from diffaug import paths
from diffaug.cli import run
from diffaug.errors import DiffaugError
from diffaug.io import atomic_dir, read_csv, read_json, write_csv, write_json
from diffaug.params import load_params
from diffaug.paths import POOL
from diffaug.plots import sample_grid, save_grid

# generate's manifest columns (diffusion/jobs.py's MANIFEST_COLUMNS, not imported: that pulls in torch);
# a real image has no prompt, seed or sampler, and its model is `real`.
COLUMNS = ["class", "file", "prompt", "seed", "model", "revision", "scheduler", "steps", "guidance"]


def copy_pool(pool: Path, out: Path) -> dict[str, int]:
    """Copy the pool's images into `out/<class>/` with a generate-style manifest; return images per class."""
    if not (pool / "manifest.csv").is_file():
        raise DiffaugError(f"{pool} does not exist; produce it with `dvc repro split` (split.pool_per_class > 0).")
    classes = read_json(pool / "classes.json")
    rows = read_csv(pool / "manifest.csv")
    for c in classes:
        (out / c).mkdir()
    for r in rows:
        shutil.copyfile(pool / r["file"], out / r["file"])
    write_csv(
        out / "manifest.csv",
        [{k: "" for k in COLUMNS} | {"class": r["class"], "file": r["file"], "model": "real"} for r in rows],
        COLUMNS,
    )
    return {c: sum(r["class"] == c for r in rows) for c in classes}


def main() -> None:
    name = sys.argv[1]
    params = load_params()
    params.sources.entry("real", name)
    with atomic_dir(paths.synthetic(name)) as tmp:
        counts = copy_pool(POOL, tmp)
    save_grid(sample_grid(paths.synthetic(name), list(counts)), paths.samples(name))
    write_json(paths.metrics(f"real/{name}"), {"images": sum(counts.values()), "per_class": counts})
    print(f"real {name}: {sum(counts.values())} pool images ({min(counts.values())} in the smallest class)")


if __name__ == "__main__":
    run(main)
