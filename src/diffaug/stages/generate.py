"""Stage `generate@<source>`: models/base + data/prompts.json -> data/synthetic/<source>, for the
text-to-image sources of params.yaml's `sources.txt2img` (vanilla Stable Diffusion).

Multi-GPU: `generate.launcher: "accelerate launch --num_processes 4"` splits the batches between GPUs.
"""

import sys

from diffaug.cli import run
from diffaug.diffusion.loading import load_pipeline, read_source
from diffaug.diffusion.source import make_source, prompts_by_class
from diffaug.io import read_json
from diffaug.params import load_params
from diffaug.paths import PROMPTS
from diffaug.rules import made_count


def main() -> None:
    name = sys.argv[1]
    params = load_params()
    params.sources.entry("txt2img", name)
    g = params.generate.model_copy(update={"per_class": made_count(params, name)})  # + candidates for its filters
    source = read_source()
    prompts = prompts_by_class(read_json(PROMPTS))
    make_source(
        name,
        prompts,
        g,
        source,
        "",
        lambda device, dtype: load_pipeline(source, device, dtype, g.scheduler, g.safety_checker),
    )


if __name__ == "__main__":
    run(main)
