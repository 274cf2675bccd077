"""Stage `generate_finetuned@<method>`: models/base + models/<method>/<class> -> data/synthetic/<method>.

The same generation library, seeds, cache and batching as `generate_vanilla`, with each class's
fine-tuned weights and the method's prompt: DreamBooth's identifier prompt ("a photo of sks {}"),
Textual Inversion's prompt around the learned token ("a photo of a <class>").
"""
import sys
from pathlib import Path

from diffaug.config import load_params
from diffaug.diffusion.dreambooth import DreamBoothWeights
from diffaug.diffusion.pipeline import fingerprint, load_pipeline, read_source
from diffaug.diffusion.synthesize import synthesize
from diffaug.diffusion.textual_inversion import EMBEDS_FILE, fill
from diffaug.errors import DiffaugError
from diffaug.io import read_json, sha256_tree
from diffaug.stages import run

METHODS = ("dreambooth", "textual_inversion")


def main() -> None:
    method = sys.argv[1]
    if method not in METHODS:
        raise DiffaugError(f"unknown fine-tuning method {method!r}; use one of {', '.join(METHODS)}.")
    params = load_params()
    g, root, classes = params.generate, Path("models") / method, list(params.classes)
    trained = {}
    for c in classes:
        if not (root / c / "trained.json").exists():
            raise DiffaugError(f"{root / c} is missing; run `dvc repro train_{method}@{c}` first.")
        trained[c] = read_json(root / c / "trained.json")
    source = read_source()
    weights = {c: sha256_tree(root / c)[:16] for c in classes}

    def load(device, dtype):
        pipe = load_pipeline(source, device, dtype, g.scheduler, g.safety_checker)
        if method == "textual_inversion":
            pipe.load_textual_inversion([str(root / c) for c in classes], token=[trained[c]["token"] for c in classes],
                                        weight_name=EMBEDS_FILE, use_safetensors=True, local_files_only=True)
        return pipe

    if method == "dreambooth":
        prompts = {c: [params.dreambooth.prompt.format(c)] for c in classes}
        switch = DreamBoothWeights(root)
    else:
        prompts = {c: [fill(params.textual_inversion.prompt, trained[c]["token"], c)] for c in classes}
        switch = None
    meta = {"model": f"{source['model']}+{method}", "revision": source.get("commit") or source.get("revision") or ""}
    report = synthesize(method, prompts, g, fingerprint(source), meta, load, out=Path("data/synthetic") / method,
                        metrics=Path("metrics/generate") / f"{method}.json",
                        grid=Path("plots/samples") / f"{method}.png", weights=weights, switch=switch)
    print(f"generate_finetuned {method}: {report['images']} images ({report['generated']} generated, "
          f"{report['reused']} from the cache) on {report['device']}")


if __name__ == "__main__":
    run(main)
