"""Stage `img2img@<source>` (SDEdit / Real Guidance), for the sources of params.yaml's `sources.img2img`:
models/base + data/original (+ data/prompts.json or the Textual Inversion tokens) -> data/synthetic/<source>.

Every image starts from a real image of d_original (never data/test); the manifest records its
parent and strength. Seeds, cache, resume, batching, out-of-memory fallback and the multi-GPU split
(`generate.launcher`) are generate@'s.
"""

import sys

from diffaug.cli import run
from diffaug.diffusion.img2img import FromParents, plan_img2img
from diffaug.diffusion.loading import load_pipeline, read_source
from diffaug.diffusion.source import finetuned_models, make_source, prompts_by_class
from diffaug.diffusion.textual_inversion import generation_prompts, load_tokens
from diffaug.io import read_csv, read_json
from diffaug.params import load_params
from diffaug.paths import ORIGINAL, PROMPTS
from diffaug.rules import made_count


def main() -> None:
    name = sys.argv[1]
    params = load_params()
    params.sources.entry("img2img", name)
    g, settings = params.generate, params.img2img
    classes = read_json(ORIGINAL / "classes.json")
    parents: dict[str, list[tuple[str, str]]] = {c: [] for c in classes}
    for r in read_csv(ORIGINAL / "manifest.csv"):
        parents[r["class"]].append((r["file"], r["sha256"]))
    source, weights, trained = read_source(), None, None
    if settings.token == "textual_inversion":
        root, trained, weights = finetuned_models("textual_inversion", classes)
        prompts = generation_prompts(params.textual_inversion.prompt, trained)
    else:
        prompts = prompts_by_class(read_json(PROMPTS))
    counts = {c: made_count(params, name, len(ps)) for c, ps in parents.items()}
    jobs = plan_img2img(prompts, parents, counts, settings.strength, settings.seed, weights)

    def load(device, dtype):
        pipe = load_pipeline(source, device, dtype, g.scheduler, g.safety_checker)
        if trained:
            load_tokens(pipe, root, classes, trained)
        return FromParents.over(pipe, ORIGINAL, g.resolution)

    draw = g.model_copy(update={"steps": settings.steps, "guidance": settings.guidance, "seed": settings.seed})
    make_source(name, prompts, draw, source, "img2img", load, weights=weights, jobs=jobs)


if __name__ == "__main__":
    run(main)
