"""Stage `generate_finetuned@<source>` of a DreamBooth source (`sources.finetuned.<source>.method:
dreambooth`): models/base + models/dreambooth/<class> -> data/synthetic/<source>.

The generation library, seeds, cache and batching of `generate@<source>`, with each class's
fine-tuned UNet (or LoRA adapters) switched in before its batches and the instance prompt
("a photo of sks {}").
"""

import sys

from diffaug.cli import run
from diffaug.diffusion.dreambooth import DreamBoothWeights, generation_prompts
from diffaug.diffusion.loading import load_pipeline, read_source
from diffaug.diffusion.source import finetuned_models, make_source
from diffaug.params import load_params
from diffaug.rules import made_count


def main() -> None:
    name = sys.argv[1]
    params = load_params()
    params.sources.entry("finetuned", name, method="dreambooth")
    g, classes = params.generate, list(params.classes)
    g = g.model_copy(update={"per_class": made_count(params, name)})  # with the candidates its filters ask for
    root, _, weights = finetuned_models("dreambooth", classes)
    source = read_source()
    make_source(
        name,
        generation_prompts(params.dreambooth.prompt, classes),
        g,
        source,
        "dreambooth",
        lambda device, dtype: load_pipeline(source, device, dtype, g.scheduler, g.safety_checker),
        weights=weights,
        switch=DreamBoothWeights(root),
    )


if __name__ == "__main__":
    run(main)
