"""What a study cost: device-hours per stage from the metrics the stages record, and per synthetic image.

Every generation and fine-tuning stage writes `seconds` and `device` (and generation its number of
processes) into its metrics; `cost_summary` adds them up for one experiment's `metrics/` folder.
A synthetic image's cost is its share of the generation run plus its share of the fine-tuning of its
method (all classes' DreamBooth or Textual Inversion runs; which method a source uses comes from
params.yaml's `sources`). A filtered source's image costs the candidates its source made for each
kept one, plus its share of the filter run. Hours on `cpu` or `mps` are reported apart from GPU hours.
A generation run that found every image in the image cache timed none, and the cache keeps no timing:
its source's `seconds_per_image` is then "cached" (and so is that of a filtered source made of it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

FINETUNED = ("dreambooth", "textual_inversion")  # the fine-tuning methods: metrics/<method>/<class>.json
CACHED = "cached"  # seconds_per_image of images that all came from the image cache


def _read(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _hours(m: dict) -> float:
    return float(m.get("seconds") or 0.0) * int(m.get("processes") or 1) / 3600.0


def _is_gpu(m: dict) -> bool:
    return str(m.get("device") or "cpu") not in ("cpu", "mps")


def _stage(m: Optional[dict]) -> Optional[dict]:
    """A stage's hours, whether on a GPU, and its device, from its metrics (None if it recorded no time)."""
    if not m or m.get("seconds") is None:
        return None
    return {"hours": round(_hours(m), 4), "gpu": _is_gpu(m), "device": m.get("device")}


def _generated(root: Path) -> dict[str, dict]:
    """Source -> the metrics of its generation run (metrics/generate/<source>.json)."""
    found = {path.stem: _read(path) for path in sorted((root / "generate").glob("*.json"))}
    return {source: m for source, m in found.items() if m}


def _source_cost(m: dict, finetune: float) -> dict:
    """A generated source's cost: generation time per image made now, plus the fine-tuning of its method
    (`finetune` hours) shared by all its images."""
    made, images, hours = int(m.get("generated") or 0), int(m.get("images") or 0), _hours(m)
    per_image = round(hours * 3600 / made + finetune * 3600 / max(images, 1), 3) if made else None
    if images and not made:  # every image was in the cache
        per_image = CACHED
    return {
        "images": images,
        "generated": made,
        "generation_hours": round(hours, 4),
        "finetune_hours": round(finetune, 4),
        "seconds_per_image": per_image,
        "gpu": _is_gpu(m),
    }


def _filtered_cost(m: dict, of: str, made: dict) -> dict:
    """A filtered source's cost: the candidates its source `of` made (`made`: that source's cost) for each
    kept image, plus its share of the filter run."""
    per_image = made["seconds_per_image"]
    if isinstance(per_image, float | int):
        per_image = round(per_image * m["candidates"] / m["kept"] + _hours(m) * 3600 / m["kept"], 3)
    return {
        "images": int(m["kept"]),
        "of": of,
        "candidates": int(m.get("candidates") or 0),
        "filter_hours": round(_hours(m), 4),
        "seconds_per_image": per_image,
        "gpu": made["gpu"],
    }


def _sources_of_params(methods: Optional[dict[str, str]], filtered: Optional[dict[str, str]]):
    """params.yaml's fine-tuned sources' methods and filtered sources' `of`, where not given."""
    from diffaug.params import load_params

    sources = load_params().sources
    methods = {name: e.method for name, e in sources.finetuned.items()} if methods is None else methods
    filtered = {name: e.of for name, e in sources.filtered.items()} if filtered is None else filtered
    return methods, filtered


def cost_summary(
    metrics_dir: str | Path = "metrics",
    methods: Optional[dict[str, str]] = None,
    filtered: Optional[dict[str, str]] = None,
) -> dict:
    """{"stages": {name: {hours, gpu, device}}, "sources": {source: {...per image}}, "gpu_hours", "cpu_hours"}.

    `methods`: each fine-tuned source's method, `filtered`: each filtered source's `of` source
    (default: params.yaml's `sources`).
    """
    if methods is None or filtered is None:
        methods, filtered = _sources_of_params(methods, filtered)
    root, generated = Path(metrics_dir), _generated(Path(metrics_dir))
    runs = {
        f"train_{method}@{path.stem}": _read(path)
        for method in FINETUNED
        for path in sorted((root / method).glob("*.json"))
    }
    runs |= {f"generate@{source}": m for source, m in generated.items()}
    runs |= {"train": _read(root / "train" / "metrics.json")}
    runs |= {f"filter@{name}": _read(root / "filter" / f"{name}.json") for name in filtered}
    stages = {name: stage for name, m in runs.items() if (stage := _stage(m))}

    def finetune(method: Optional[str]) -> float:
        return sum(s["hours"] for n, s in stages.items() if method and n.startswith(f"train_{method}@"))

    costs = {source: _source_cost(m, finetune(methods.get(source))) for source, m in generated.items()}
    for name, of in filtered.items():
        m = runs[f"filter@{name}"]
        if m and m.get("kept") and of in costs:
            costs[name] = _filtered_cost(m, of, costs[of])
    return {
        "stages": stages,
        "sources": costs,
        "gpu_hours": round(sum(s["hours"] for s in stages.values() if s["gpu"]), 4),
        "cpu_hours": round(sum(s["hours"] for s in stages.values() if not s["gpu"]), 4),
    }
