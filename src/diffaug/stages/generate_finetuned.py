"""Stage `generate_finetuned@<source>`, for the sources of params.yaml's `sources.finetuned`: models/base +
models/<method>/<class> -> data/synthetic/<source>, where the source's `method` is dreambooth or
textual_inversion.

The seeds, cache and batching of `generate@<source>` (diffusion.source), with each class's fine-tuned
model: DreamBooth switches the class's UNet (or LoRA adapters) in before its batches under the instance
prompt ("a photo of sks {}"); Textual Inversion loads every class's learned token into the pipeline and
writes the prompt around it ("a photo of a <seven>").
"""

import sys

from diffaug.cli import run
from diffaug.diffusion import dreambooth, textual_inversion
from diffaug.diffusion.loading import load_pipeline, read_source
from diffaug.diffusion.source import finetuned_models, make_source
from diffaug.params import load_params
from diffaug.rules import made_count


def main() -> None:
    name = sys.argv[1]
    params = load_params()
    method = params.sources.entry("finetuned", name).method
    g, classes = params.generate, list(params.classes)
    g = g.model_copy(update={"per_class": made_count(params, name)})  # with the candidates its filters ask for
    root, trained, weights = finetuned_models(method, classes)
    source = read_source()
    if method == "dreambooth":
        prompts = dreambooth.generation_prompts(params.dreambooth.prompt, classes)
        switch = dreambooth.DreamBoothWeights(root)
    else:
        prompts, switch = textual_inversion.generation_prompts(params.textual_inversion.prompt, trained), None

    def load(device, dtype):
        pipe = load_pipeline(source, device, dtype, g.scheduler, g.safety_checker)
        if method == "textual_inversion":
            textual_inversion.load_tokens(pipe, root, classes, trained)
        return pipe

    make_source(name, prompts, g, source, method, load, weights=weights, switch=switch)


if __name__ == "__main__":
    run(main)
