"""What a study cost: device-hours per stage from the metrics the stages record, and per synthetic image.

Every generation and fine-tuning stage writes `seconds` and `device` (and generation its number of
processes) into its metrics; `cost_summary` adds them up for one experiment's `metrics/` folder.
A synthetic image's cost is its share of the generation run plus its share of the fine-tuning of its
method (all classes' DreamBooth or Textual Inversion runs; which method a source uses comes from
params.yaml's `sources`). A filtered source's image costs the candidates its source made for each
kept one, plus its share of the filter run. Hours on `cpu` or `mps` are reported apart from GPU hours.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

FINETUNED = ("dreambooth", "textual_inversion")  # the fine-tuning methods: metrics/<method>/<class>.json


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
        from diffaug.params import load_params

        sources = load_params().sources
        methods = {name: e.method for name, e in sources.finetuned.items()} if methods is None else methods
        filtered = {name: e.of for name, e in sources.filtered.items()} if filtered is None else filtered
    root = Path(metrics_dir)
    stages: dict[str, dict] = {}

    def add(name: str, m: Optional[dict]) -> None:
        if m and m.get("seconds") is not None:
            stages[name] = {"hours": round(_hours(m), 4), "gpu": _is_gpu(m), "device": m.get("device")}

    for method in FINETUNED:
        for path in sorted((root / method).glob("*.json")):
            add(f"train_{method}@{path.stem}", _read(path))
    generated = {}
    for path in sorted((root / "generate").glob("*.json")):
        m = _read(path)
        add(f"generate@{path.stem}", m)
        if m:
            generated[path.stem] = m
    add("train", _read(root / "train" / "metrics.json"))

    sources = {}
    for source, m in generated.items():
        method = methods.get(source)
        finetune = sum(s["hours"] for n, s in stages.items() if method and n.startswith(f"train_{method}@"))
        made, images = int(m.get("generated") or 0), int(m.get("images") or 0)
        hours = _hours(m)
        sources[source] = {
            "images": images,
            "generated": made,
            "generation_hours": round(hours, 4),
            "finetune_hours": round(finetune, 4),
            # Generation time per image made now, plus the method's fine-tuning shared by all its images.
            # A run that found every image in the cache made none: no per-image figure then.
            "seconds_per_image": round(hours * 3600 / made + finetune * 3600 / max(images, 1), 3) if made else None,
            "gpu": _is_gpu(m),
        }
    for name, of in filtered.items():
        m = _read(root / "filter" / f"{name}.json")
        add(f"filter@{name}", m)
        if not m or not m.get("kept") or of not in sources:
            continue
        made = sources[of]["seconds_per_image"]
        sources[name] = {
            "images": int(m["kept"]),
            "of": of,
            "candidates": int(m.get("candidates") or 0),
            "filter_hours": round(_hours(m), 4),
            "seconds_per_image": round(made * m["candidates"] / m["kept"] + _hours(m) * 3600 / m["kept"], 3)
            if made is not None
            else None,
            "gpu": sources[of]["gpu"],
        }
    return {
        "stages": stages,
        "sources": sources,
        "gpu_hours": round(sum(s["hours"] for s in stages.values() if s["gpu"]), 4),
        "cpu_hours": round(sum(s["hours"] for s in stages.values() if not s["gpu"]), 4),
    }
