"""Stage `prompts`: classes -> data/prompts.json (templates, optionally expanded by a language model)."""

from collections import Counter

from diffaug.cli import run
from diffaug.diffusion.prompts import build_prompts
from diffaug.io import write_json
from diffaug.params import load_params
from diffaug.paths import PROMPTS


def main() -> None:
    params = load_params()
    records = build_prompts(list(params.classes), params.prompts)
    write_json(PROMPTS, records)
    counts = Counter(r["class"] for r in records)
    print(f"prompts: {len(records)} prompts, {min(counts.values())} to {max(counts.values())} per class")


if __name__ == "__main__":
    run(main)
