"""Stage `generate_vanilla`: models/base + data/prompts.json -> data/synthetic/vanilla.

Multi-GPU: `accelerate launch -m diffaug.stages.generate_vanilla` splits the batches between GPUs.
"""
from pathlib import Path

from diffaug.config import load_params
from diffaug.diffusion.pipeline import fingerprint, load_pipeline, read_source
from diffaug.diffusion.synthesize import prompts_by_class, synthesize
from diffaug.io import read_json
from diffaug.stages import run


def main() -> None:
    params = load_params().generate
    source = read_source()
    prompts = prompts_by_class(read_json("data/prompts.json"))
    meta = {"model": source["model"], "revision": source.get("commit") or source.get("revision", "")}
    report = synthesize(
        "vanilla", prompts, params, fingerprint(source), meta,
        lambda device, dtype: load_pipeline(source, device, dtype, params.scheduler, params.safety_checker),
        out=Path("data/synthetic/vanilla"), metrics=Path("metrics/generate/vanilla.json"),
        grid=Path("plots/samples/vanilla.png"))
    print(f"generate_vanilla: {report['images']} images ({report['generated']} generated, "
          f"{report['reused']} from the cache) on {report['device']}")


if __name__ == "__main__":
    run(main)
