"""Stage `generate_finetuned@<source>` of a Textual Inversion source (`sources.finetuned.<source>.method:
textual_inversion`): models/base + models/textual_inversion/<class> -> data/synthetic/<source>.

The generation library, seeds, cache and batching of `generate@<source>`, with every class's
learned token loaded into the pipeline and the prompt around it ("a photo of a <seven>").
"""

import sys

from diffaug.cli import run
from diffaug.diffusion.loading import load_pipeline, read_source
from diffaug.diffusion.source import finetuned_models, make_source
from diffaug.diffusion.textual_inversion import generation_prompts, load_tokens
from diffaug.params import load_params
from diffaug.rules import made_count


def main() -> None:
    name = sys.argv[1]
    params = load_params()
    params.sources.entry("finetuned", name, method="textual_inversion")
    g, classes = params.generate, list(params.classes)
    g = g.model_copy(update={"per_class": made_count(params, name)})  # with the candidates its filters ask for
    root, trained, weights = finetuned_models("textual_inversion", classes)
    source = read_source()

    def load(device, dtype):
        pipe = load_pipeline(source, device, dtype, g.scheduler, g.safety_checker)
        load_tokens(pipe, root, classes, trained)
        return pipe

    make_source(
        name,
        generation_prompts(params.textual_inversion.prompt, trained),
        g,
        source,
        "textual_inversion",
        load,
        weights=weights,
    )


if __name__ == "__main__":
    run(main)
