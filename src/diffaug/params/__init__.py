"""Typed, validated parameters: one pydantic model per `params.yaml` section.

params.yaml is the only place a default is written: every field here is required, so a params file
missing a key stops with a sentence naming it instead of silently getting another value. Bounds and
allowed values sit beside each field; rules that relate two sections are the validators of `Params`.
A bad value stops with one sentence naming the key, the value and what is allowed.

The models are schema only: counting that shapes a stage's output (how many images a mix draws, a
generation stage makes, a class keeps) lives in rules.py, a dep of the stages that count, and
the checks here call it. Besides that and the Textual Inversion token, this module imports nothing
from the project but the error type, so every stage can load params without the scraper, torch or
diffusers.
"""

from __future__ import annotations

import re
import typing
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from diffaug.errors import DiffaugError
from diffaug.rules import GENERATED_KINDS, asks, candidates, imbalance_sizes, mix_counts, source_count, token_of

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Files that live beside the class folders (data/raw, data/original, data/test, data/synthetic/<source>).
RESERVED_NAMES = ("manifest.csv", "classes.json", "report.json")
# Characters the shell still reads inside the double quotes dvc.yaml puts around a class name.
SHELL_SPECIAL = '"$`\\'
# The scraper's vocabularies (data/search.py asserts that its tables match these).
SEARCH_ENGINES = ("bing",)
LICENCES = (
    "any",
    "creative_commons",
    "public_domain",
    "free_to_share_and_use",
    "free_to_share_and_use_commercially",
    "free_to_modify_share_and_use",
    "free_to_modify_share_and_use_commercially",
)


class ParamsError(DiffaugError):
    """A value in params.yaml that is not allowed."""


# ------------------------------------------------------------------------------------------------
# Field types: each carries its own check, so a section only names them.
# ------------------------------------------------------------------------------------------------


def _device(value: str) -> str:
    if not (value in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", value)):
        raise ValueError("allowed: auto, cpu, cuda, cuda:N, mps")
    return value


def _launcher(value: str) -> str:
    # The launcher is pasted into a shell command line by dvc.yaml: only these words may appear.
    if value != "python" and not re.fullmatch(r"accelerate launch( --[a-z_]+(=| )[\w.,:-]+| --[a-z_]+)*", value):
        raise ValueError("use python, or accelerate launch with its --options (letters, digits and .,:- only)")
    return value


def _multiple_of_8(value: Optional[int]) -> Optional[int]:
    if value is not None and (value < 8 or value % 8):
        raise ValueError("use a multiple of 8 (or null)")
    return value


def _template(*fields: str):
    """A prompt template: exactly one {} (the class or its token) and only the named {fields}."""

    def check(text: str) -> str:
        if text.count("{}") != 1:
            raise ValueError("a prompt template needs exactly one {} where the class (or its token) goes")
        try:
            text.format("", **{f: "" for f in fields})
        except (KeyError, IndexError, ValueError):
            named = " and " + ", ".join("{" + f + "}" for f in fields) if fields else ""
            raise ValueError(f"a prompt template may hold only {{}}{named}; double other braces ({{{{ }}}})") from None
        return text

    return check


def _hub_or_folder(value: str) -> str:
    """A hub id (owner/name) or an existing local folder: anything else would reach the hub as a bad id."""
    if re.fullmatch(r"[\w][\w.-]*/[\w][\w.-]*", value) and ".." not in value:
        return value
    if Path(value).is_dir():
        return value
    raise ValueError("use a hub id like owner/name or an existing local folder")


def _stem(value: Any) -> Any:
    return str(value).lower() if isinstance(value, bool) else value  # YAML writes true/false as booleans


def _proportion(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError("use a proportion between 0.0 and 1.0")
    return value


def _non_empty(values: list) -> list:
    if not values:
        raise ValueError("list at least one")
    return values


Count = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=0)]
Proportion = Annotated[float, AfterValidator(_proportion)]
Device = Annotated[str, AfterValidator(_device)]
Launcher = Annotated[str, AfterValidator(_launcher)]
Size8 = Annotated[Optional[int], AfterValidator(_multiple_of_8)]
Template = Annotated[str, AfterValidator(_template())]
Templates = Annotated[list[Template], AfterValidator(_non_empty)]
SmallStem = Annotated[Literal["auto", "true", "false"], BeforeValidator(_stem)]
Precision = Literal["auto", "no", "fp16", "bf16"]
Regime = Literal["scratch", "finetune", "frozen"]


class Section(BaseModel):
    # strict: `true` is not a number and "3" is not a count; ints are still accepted for floats.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# ------------------------------------------------------------------------------------------------
# Sections, in pipeline order
# ------------------------------------------------------------------------------------------------


class Scrape(Section):
    source: Literal["digits", "folder", "urls", "search"] = Field(
        description="`digits` (built in, offline), `folder` (`<path>/<class>/...`), `urls` (CSV of `url,label`), "
        "`search` (an image search engine)"
    )
    path: str = Field(
        description="the input, a dependency of `scrape`: the folder (`folder`) or CSV (`urls`); "
        "`data/input` for `digits` and `search`"
    )
    digits_size: int = Field(ge=8, description="digits: side in px the 8x8 scans are upscaled to")
    max_side: int = Field(ge=0, description="shrink larger images to this longest side (0 keeps them)")
    # Pillow refuses (as a decompression bomb) from its own MAX_IMAGE_PIXELS, 89,478,485 by default.
    max_pixels: int = Field(
        ge=1,
        le=89_478_485,
        description="larger images (width x height, read from the file's "
        "header before decoding) are refused as too_many_pixels",
    )
    workers: Count = Field(description="parallel downloads")
    timeout: float = Field(
        gt=0, description="seconds per download attempt: lookup, connect, every redirect, headers and body together"
    )
    retries: int = Field(ge=0, description="further attempts after a transient failure")
    max_bytes: Count = Field(description="larger downloads are refused")
    engine: Literal[SEARCH_ENGINES] = Field(description="search: the image search engine")
    endpoint: Optional[str] = Field(description="search: the engine's address (`null`: its own)")
    queries: Annotated[list[Template], AfterValidator(_non_empty)] = Field(
        description="search: query templates, tried in order"
    )
    per_class: Count = Field(description="search: usable images to collect per class")
    licence: Literal[LICENCES] = Field(description="search: the engine's licence filter (recorded, unverified)")
    delay: float = Field(ge=0, description="search: seconds between two requests to one host")

    @model_validator(mode="after")
    def _path_exists(self):
        want = {
            "folder": ("a folder of class sub-folders", Path.is_dir),
            "urls": ("a CSV file of url,label rows", Path.is_file),
        }.get(self.source)
        if want and not want[1](Path(self.path)):
            raise _fail(
                "scrape.path",
                self.path,
                f"scrape.source={self.source} reads {want[0]} there, and it does "
                "not exist (relative paths start at the repository's root)",
            )
        return self


class Split(Section):
    original_per_class: Optional[Count] = Field(
        description="images per class in `d_original` (paper: 700); `null` = all that remain after the test split"
    )
    test_per_class: Count = Field(description="held-out test images per class (paper: 300)")
    dedupe_distance: int = Field(
        ge=0, le=64, description="pHash Hamming distance counted as a near-duplicate of a test image"
    )
    imbalance: Optional[float] = Field(
        gt=0.0,
        le=1.0,
        description="`null` (balanced) or a long-tail ratio r: class c of C keeps "
        "n_c = round(n_max · r^(c/(C−1))) images of `d_original` (long-tailed CIFAR)",
    )
    pool_per_class: int = Field(
        ge=0,
        description="extra real images per class held out in `data/pool` (the "
        "`real` sources' images), drawn from what `d_original` and `d_test` "
        "leave, near-duplicates of either skipped; 0 = no pool",
    )
    seed: Seed = Field(description="seed of the split")


class Base(Section):
    model: str = Field(description="`builtin:tiny` (offline, trained here), a hub id, or a local diffusers folder")
    revision: str = Field(description="hub: branch, tag or commit; pinned to its commit in models/base/source.json")
    tiny_steps: Count = Field(description="builtin:tiny: pretraining steps of the denoiser")
    seed: Seed = Field(description="seed of the built-in model's pretraining")

    @model_validator(mode="after")
    def _model_known(self):
        if self.model.startswith("builtin:"):
            if self.model != "builtin:tiny":
                raise _fail("base.model", self.model, "allowed built-in model: builtin:tiny")
            return self
        try:
            _hub_or_folder(self.model)
        except ValueError:
            raise _fail(
                "base.model",
                self.model,
                "use builtin:tiny, a hub id like "
                "stable-diffusion-v1-5/stable-diffusion-v1-5, or an existing local folder",
            ) from None
        return self


class Prompts(Section):
    templates: Templates = Field(description="one prompt per template and class (`{}` = the class name)")
    llm: Optional[str] = Field(description="optional text-generation model (hub id or folder) that expands prompts")
    llm_revision: str = Field(description="revision of `llm`")
    llm_questions: Templates = Field(description="questions put to `llm` (the paper's GPT-3 templates)")
    llm_per_question: Count = Field(description="answers kept per question and class")
    temperature: float = Field(gt=0, description="sampling temperature of `llm`")
    max_new_tokens: Count = Field(description="length limit of each answer")
    seed: Seed = Field(description="seed of `llm` sampling")


class Generate(Section):
    per_class: Count = Field(description="synthetic images per class of each generated source (paper: 700)")
    scheduler: Literal["dpm++", "lms", "ddim", "pndm", "euler", "euler_a"] = Field(
        description="sampler (the paper: `lms`)"
    )
    steps: Count = Field(description="denoising steps (the paper: 50)")
    guidance: float = Field(ge=0, description="classifier-free guidance scale")
    negative_prompt: str = Field(description="negative prompt (empty: none)")
    resolution: Size8 = Field(description="generated side in px; `null` = the model's native size")
    save_size: Size8 = Field(description="saved side in px; `null` keeps the generated size")
    batch_size: Count = Field(description="images per pipeline call (halves itself on CUDA out-of-memory)")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        description="`auto`: bf16/fp16 on a GPU, fp32 on the CPU"
    )
    compile: bool = Field(description="torch.compile the UNet (CUDA)")
    cpu_offload: bool = Field(description="keep models on the CPU until used (small GPUs)")
    safety_checker: bool = Field(description="run the model's safety checker (hub models only)")
    device: Device = Field(description="`auto`, `cpu`, `cuda`, `cuda:N` or `mps`")
    launcher: Launcher = Field(description="`python`, or `accelerate launch --num_processes N` for several GPUs")
    seed: Seed = Field(description="seed of the per-image seeds")


class _Finetune(Section):
    """What DreamBooth and Textual Inversion share (the diffusers examples' options)."""

    steps: Count = Field(description="optimizer steps")
    lr: float = Field(gt=0, description="learning rate")
    scale_lr: bool = Field(description="multiply lr by batch size x gradient accumulation x processes")
    batch_size: Count = Field(description="images per step")
    gradient_accumulation: Count = Field(description="steps accumulated per optimizer step")
    mixed_precision: Precision = Field(description="`auto` (bf16/fp16 on CUDA, none on the CPU), `no`, `fp16`, `bf16`")
    gradient_checkpointing: bool = Field(description="less GPU memory, about 20% slower")
    resolution: Size8 = Field(description="training side in px; `null` = the model's native size")
    device: Device = Field(description="`auto`, `cpu`, `cuda`, `cuda:N` or `mps`")
    launcher: Launcher = Field(description="`python`, or `accelerate launch --num_processes N`")
    checkpoint_every: int = Field(
        ge=0,
        description="steps between checkpoints (in the cache, outside the outputs) a killed run resumes from, "
        "with the same result; `0`: none",
    )
    seed: Seed = Field(description="seed of the instance draw, noise and timesteps")


class DreamBooth(_Finetune):
    instance_images: Count = Field(description="real images per class the model learns (the paper: about 5)")
    prompt: Template = Field(description="instance prompt with the identifier `sks`; also the generation prompt")
    class_prompt: Template = Field(description="prior-preservation prompt: what the base model draws for the class")
    prior_preservation: bool = Field(description="add the base model's own class images to the loss")
    class_images: Count = Field(description="prior images per class")
    prior_loss_weight: float = Field(ge=0, description="weight of the prior loss")
    prior_steps: Count = Field(description="DPM-Solver++ steps of the prior images")
    prior_guidance: float = Field(ge=0, description="guidance of the prior images")
    mode: Literal["full", "lora"] = Field(description="`full` (the whole UNet) or `lora` (adapters through peft)")
    lora_rank: Count = Field(description="rank of the LoRA adapters")
    lora_lr: float = Field(gt=0, description="learning rate in `lora` mode (`lr` is full mode's)")
    lora_targets: Literal["attention", "all"] = Field(
        description="UNet layers with adapters: `attention` (q, k, v, out: the diffusers example) or `all` "
        "(also projections, feed-forward, ResNet convs, time embedding)"
    )
    train_text_encoder: bool = Field(description="also fine-tune the text encoder")
    use_8bit_adam: bool = Field(description="bitsandbytes 8-bit AdamW (CUDA only)")


class TextualInversion(_Finetune):
    images: Count = Field(description="real images per class the token learns")
    num_vectors: Count = Field(description="embedding vectors behind the token `<class>`")
    init_word: Optional[str] = Field(description="the embedding starts as this word's; `null` = the class name")
    templates: Annotated[list[str], AfterValidator(_non_empty)] = Field(
        description="`object` (the diffusers example's 27 templates) or your own (`{}` = token, `{class}` = class)"
    )
    prompt: Annotated[str, AfterValidator(_template("class"))] = Field(
        description="generation prompt (`{}` = the token, `{class}` = the class name)"
    )
    init_reg: float = Field(ge=0, description="weight of an L2 pull of the token toward `init_word`")

    @model_validator(mode="after")
    def _templates(self):
        for text in self.templates:
            if text != "object":
                try:
                    _template("class")(text)
                except ValueError as e:
                    raise _fail("textual_inversion.templates", text, str(e)) from None
        return self


class Mix(Section):
    source: str = Field(
        description='`none` (the paper\'s "only original" baseline: the real part alone) or a '
        "synthetic source of `sources`"
    )
    p: Proportion = Field(description="proportion of synthetic images, 0.0 to 1.0")
    n_per_class: Optional[Count] = Field(description="fixed per-class total `n` (`null`: all real training images)")
    mode: Literal["replace", "add", "balance"] = Field(
        description="`replace`: round(p·n) synthetic + n − round(p·n) real; `add`: all n real + round(p·n) synthetic; "
        "`balance`: all real images, every class topped up with synthetic ones to the largest class's "
        "count (or to `n_per_class`); p is not used"
    )
    val_fraction: float = Field(ge=0.0, lt=1.0, description="validation share, for model selection")
    val_from: Literal["original", "mixed"] = Field(
        description="`original`: real images only; `mixed`: the paper's code (validation drawn from the mixed set)"
    )
    seed: Seed = Field(description="seed of the draw (the study sets it with `train.seed`)")
    exclude_test_copies: bool = Field(
        description="leave out synthetic images within `copies.phash_distance` of a `d_test` image (a leak)"
    )


class _Classifier(Section):
    """A ResNet-18 trained with SGD: what `train` and the `reference` classifier share."""

    epochs: Count = Field(description="training epochs")
    batch_size: int = Field(ge=2, description="images per SGD step")
    lr: float = Field(gt=0, description="SGD learning rate (the paper: 1.0e-3)")
    momentum: float = Field(ge=0, lt=1, description="SGD momentum (the paper: 0.9)")
    weight_decay: float = Field(ge=0, description="SGD weight decay")
    lr_schedule: Literal["constant", "cosine"] = Field(description="`constant` (the paper) or `cosine`")
    image_size: int = Field(ge=8, description="side in px images are resized to")
    small_stem: SmallStem = Field(description="3x3 stride-1 stem without max-pool: `auto` (at <= 64 px), true, false")
    augment: Literal["none", "standard", "randaugment"] = Field(
        description="`none`, `standard` (random crop), `randaugment` (then the same crop)"
    )
    hflip: bool = Field(description="horizontal flips with standard augmentation (wrong for digits and text)")
    compile: bool = Field(
        description="torch.compile the training steps (pays off on a GPU over many epochs; "
        "costs a minute of compiling first)"
    )
    seed: Seed = Field(description="seed of initialisation, order and augmentation")


class Train(_Classifier):
    regime: Regime = Field(description="`scratch`, `finetune` (ImageNet weights), `frozen` (only the head trains)")
    steps: Optional[Count] = Field(
        description="the training budget in SGD steps of `batch_size` images, the same for every mix (so runs on "
        "fewer images are not also trained less); `null`: `epochs` passes over the training set, "
        "the paper's fixed-epoch budget, which shrinks with the training set"
    )
    val_every: Count = Field(
        description="with `steps`: validate, and keep the best model, every this many steps and after the last"
    )
    threads: Optional[Count] = Field(
        description="CPU threads of training and evaluation: CPU float results depend on the thread count, so a "
        "fixed number gives the same result whatever runs the experiment (`null`: torch's default, "
        "recorded in the metrics)"
    )
    device: Device = Field(description="`auto` (CUDA > MPS > CPU), `cpu`, `cuda`, `cuda:N`, `mps`")
    checkpoint_every: int = Field(
        ge=0,
        description="steps between checkpoints (in the cache, outside the outputs) a killed run resumes from, "
        "with the same result; `0`: none",
    )


class Evaluate(Section):
    batch_size: Count = Field(description="images per forward pass when scoring")


class Reference(_Classifier):
    """A classifier of d_original alone (from scratch): it scores how recognisable synthetic images are,
    and gives the offline FID features."""

    val_fraction: float = Field(ge=0.0, lt=1.0, description="share of d_original held out to pick its best epoch")

    def as_train(self, device: str) -> Train:
        # The reference trains on the fixed d_original: its budget is epochs, with torch's threads.
        return Train.model_validate(
            {
                **self.model_dump(exclude={"val_fraction"}),
                "regime": "scratch",
                "steps": None,
                "val_every": 1,
                "threads": None,
                "device": device,
                "checkpoint_every": 0,  # its few epochs of d_original are cheap to redo
            }
        )


class Fid(Section):
    features: Literal["reference", "inception"] = Field(
        description="`reference` (offline: the reference ResNet-18's 512-d features) or `inception` "
        "(pytorch-fid's InceptionV3, 2048-d, the paper)"
    )
    batch_size: Count = Field(description="images per forward pass (does not change the numbers)")
    kid_subsets: Count = Field(description="KID: random subsets averaged (their std is reported)")
    kid_subset_size: int = Field(ge=2, description="KID: images per subset, capped at the smaller set")
    device: Device = Field(description="`auto`, `cpu`, `cuda`, `cuda:N` or `mps`")
    seed: Seed = Field(description="seed of the KID subsets")


class Copies(Section):
    """Near duplicates of d_test and d_original among the synthetic images (measure stages; `mix` uses the pHash)."""

    phash_distance: Annotated[int, Field(ge=0, le=64)] = Field(
        description="perceptual-hash Hamming distance (of 64 bits) at or below which an image is a near duplicate"
    )
    feature_distance: Annotated[float, Field(ge=0.0, le=2.0)] = Field(
        description="cosine distance between `fid.features` vectors at or below which an image is a near duplicate"
    )
    flag_share: Proportion = Field(
        description="the report flags a source whose share of `d_test` near duplicates is above this"
    )


class Clip(Section):
    """Zero-shot CLIP on data/test (stage clip_zero_shot), the paper's second baseline."""

    model: Optional[Annotated[str, AfterValidator(_hub_or_folder)]] = Field(
        description="`null` (skipped, offline) or a CLIP model: hub id or folder"
    )
    revision: str = Field(description="pin a commit for a reproducible number")
    template: Template = Field(description="one prompt per class (`{}` = class name)")
    batch_size: Count = Field(description="images per forward pass")
    device: Device = Field(description="`auto`, `cpu`, `cuda`, `cuda:N` or `mps`")


class Img2Img(Section):
    """SDEdit / Real Guidance (stages img2img@<name>): each image starts from a real image of d_original,
    noised to `strength` and denoised under its class prompt; the other generation settings are `generate`'s."""

    strength: Annotated[
        list[Proportion],
        AfterValidator(_non_empty),
        BeforeValidator(lambda v: [v] if isinstance(v, (int, float)) and not isinstance(v, bool) else v),
    ] = Field(
        description="noise level: 0 keeps the real image, 1 draws anew; a list cycles through its values per image "
        "(DA-Fusion's mix); costs about strength × steps denoising steps"
    )
    per_image: Optional[Count] = Field(description="M images per real image (`null`: `per_class` in all)")
    per_class: Optional[Count] = Field(
        description="images per class in all, their parents cycled (`null`: `per_image` per real image)"
    )
    token: Optional[Literal["textual_inversion"]] = Field(
        description="`null`: the class prompts of data/prompts.json; `textual_inversion`: "
        "`textual_inversion.prompt` with each class's learned token (DA-Fusion's recipe)"
    )
    steps: Count = Field(description="denoising steps at strength 1 (strength s runs about s × steps)")
    guidance: float = Field(ge=0, description="classifier-free guidance scale")
    seed: Seed = Field(description="seed of the per-image seeds")

    @model_validator(mode="after")
    def _one_count(self):
        if (self.per_image is None) == (self.per_class is None):
            raise _fail(
                "img2img.per_image",
                self.per_image,
                "set exactly one of img2img.per_image (images per real "
                "image) and img2img.per_class (images per class), the other to null",
            )
        return self


class Filter(Section):
    """The filter@<name> stages: which images of a source a filtered source keeps."""

    threshold: Proportion = Field(
        description="confidence: keep images whose own-class probability by the `reference` classifier is at least this"
    )
    drop_top: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        description="confidence: also drop this share of each class's most confident images, the too easy (ALIA)"
    )
    clip_threshold: Optional[Proportion] = Field(
        description="clip: keep images whose CLIP softmax over the class prompts gives their class at least this "
        "(`null`: 1/classes, He et al.); needs `clip.model`"
    )
    batch_size: Count = Field(description="images per forward pass")
    device: Device = Field(description="`auto`, `cpu`, `cuda`, `cuda:N` or `mps`")


class Study(Section):
    """`diffaug study`: the grid it queues as DVC experiments. No stage reads it."""

    sources: list[str] = Field(description="synthetic sources of the grid (the `none` baseline is always added)")
    p: Annotated[list[Proportion], AfterValidator(_non_empty)] = Field(description="values of p")
    regimes: Annotated[dict[Regime, Optional[Count]], AfterValidator(_non_empty)] = Field(
        description="regime: its budget, in `train.steps` (or `train.epochs` where `train.steps` is `null`); "
        "`null` keeps the workspace's"
    )
    budget: Optional[Literal["steps", "epochs"]] = Field(
        description="the unit of the regimes' budgets: `steps` (equal for every mix) or `epochs` (the paper's); "
        "`null`: `train`'s (steps where `train.steps` is set)"
    )
    seeds: Annotated[list[Seed], AfterValidator(_non_empty)] = Field(
        description="seeds; each experiment sets `train.seed` and `mix.seed` to one"
    )
    jobs: Count = Field(description="experiments run at once (`dvc queue start -j`)")
    randaugment: bool = Field(description="also run the RandAugment baseline (only original, p = 0)")
    real_per_class: list[Count] = Field(
        description="the real-image yardstick: only original with k real images a class (p = 0, "
        "`mix.n_per_class=k`) for each k; may be empty"
    )
    add_per_class: list[Count] = Field(
        description="few-shot adding: at each k, every source with k real + k synthetic images a class "
        "(`mix.mode=add`, p = 1, `mix.n_per_class=k`) and only original at k; may be empty"
    )
    executor: Literal["queue", "ray"] = Field(
        description="queue: DVC's queue on this machine (`dvc queue start -j jobs`); ray: one Ray task per "
        "experiment, each in its own clone, on every GPU of this machine or of a Ray cluster"
    )
    retries: Annotated[int, Field(ge=0)] = Field(description="ray: times a failed experiment is run again")
    gpus_per_run: Annotated[float, Field(gt=0)] = Field(
        description="ray, where the cluster has GPUs: each experiment's share of a GPU (0.25 packs four on one)"
    )
    cpus_per_run: Count = Field(description="ray, where the cluster has no GPU: CPU cores each experiment reserves")


# ------------------------------------------------------------------------------------------------
# Synthetic sources: one declaration that dvc.yaml, mix, the study, the report and cost read
# ------------------------------------------------------------------------------------------------


class Txt2Img(Section):
    """The base model draws each class from data/prompts.json (stage generate@<name>)."""


class Finetuned(Section):
    """The base model with each class's fine-tuned weights (stage generate_finetuned@<name>)."""

    method: Literal["dreambooth", "textual_inversion"] = Field(description="whose per-class models draw the images")


class Img2ImgSource(Section):
    """Real images of d_original noised and denoised by the base model (stage img2img@<name>); the
    settings are the `img2img` section's."""


class Filtered(Section):
    """The images of another source that pass a filter (stage filter@<name>)."""

    of: str = Field(description="the source whose images are filtered (a txt2img, finetuned or img2img source)")
    filter: Literal["confidence", "clip"] = Field(
        description="`confidence` (the `reference` classifier, offline) or `clip` (needs `clip.model`)"
    )
    candidates: Annotated[float, Field(ge=1.0)] = Field(
        description="the `of` source makes this many times its own count as candidates; the filter is expected "
        "to keep 1 in `candidates`, so the filtered source counts as the `of` source's own count"
    )


class Real(Section):
    """Extra real images: a copy of data/pool, the held-out pool `split` draws (stage real@<name>); the
    ALIA baseline of a synthetic image's worth. Its size is split.pool_per_class."""


SOURCE_KINDS = {  # kind in params.yaml -> the stage group that writes its sources
    "txt2img": "generate",
    "finetuned": "generate_finetuned",
    "img2img": "img2img",
    "filtered": "filter",
    "real": "real",
}


class Sources(Section):
    txt2img: dict[str, Txt2Img] = Field(description="text-to-image sources: the base model and the class prompts")
    finetuned: dict[str, Finetuned] = Field(
        description="sources drawn by the per-class DreamBooth or Textual Inversion models"
    )
    img2img: dict[str, Img2ImgSource] = Field(
        description="img2img sources (SDEdit): real images of d_original, noised and redrawn by the base model"
    )
    filtered: dict[str, Filtered] = Field(
        description="filtered sources: the images of another source that pass a filter"
    )
    real: dict[str, Real] = Field(
        description="real sources: extra real images from the held-out pool "
        "(`data/pool`, `split.pool_per_class` per class), the control"
    )

    def kinds(self) -> dict[str, str]:
        """Every source name -> its kind, in the order params.yaml declares them."""
        return {name: kind for kind in SOURCE_KINDS for name in getattr(self, kind)}

    def names(self) -> list[str]:
        return list(self.kinds())

    def entry(self, kind: str, name: str, **expect) -> Section:
        """The settings of source `name` of `kind` (a stage's argument), with the fields in `expect`."""
        entry = getattr(self, kind).get(name)
        if entry is None or any(getattr(entry, k) != v for k, v in expect.items()):
            raise ParamsError(
                f"{name!r} is not a {kind} source{' of ' + str(expect) if expect else ''} in "
                f"params.yaml's sources; dvc.yaml and params.yaml disagree: run `dvc repro` again."
            )
        return entry

    def stage(self, name: str) -> str:
        """The DVC stage that writes data/synthetic/<name>."""
        return f"{SOURCE_KINDS[self.kinds()[name]]}@{name}"

    @model_validator(mode="after")
    def _names(self):
        seen: dict[str, str] = {}
        for kind in SOURCE_KINDS:
            for name in getattr(self, kind):
                if name in seen:
                    raise _fail(f"sources.{kind}.{name}", name, f"the name is already a {seen[name]} source")
                if name == "none" or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                    raise _fail(
                        f"sources.{kind}",
                        name,
                        "a source name is lower-case letters, digits and _, "
                        "starting with a letter, and not `none` (the baseline)",
                    )
                seen[name] = kind
        for name, entry in self.filtered.items():
            if seen.get(entry.of) not in GENERATED_KINDS:
                raise _fail(
                    f"sources.filtered.{name}.of",
                    entry.of,
                    "name a txt2img, finetuned or img2img source "
                    "of sources: " + ", ".join(n for n, k in seen.items() if k in GENERATED_KINDS),
                )
        return self


# ------------------------------------------------------------------------------------------------
# The whole file, and the rules that relate sections
# ------------------------------------------------------------------------------------------------


def _class_name_problem(name: str) -> Optional[str]:
    if not name.strip():
        return "a class name needs a visible character"
    if name != name.strip():
        return "remove the spaces at its start or end"
    if unicodedata.normalize("NFC", name) != name:
        return f"write it in composed (NFC) form, {unicodedata.normalize('NFC', name)!r}"
    if not all(c.isprintable() for c in name):
        return "a class name holds only printable characters"
    if any(c in name for c in "/" + SHELL_SPECIAL):
        return 'a class name may not hold / \\ " $ or ` (it names folders and goes into shell commands)'
    if name.startswith(".") or name.lower() in RESERVED_NAMES:
        return "it would be a hidden file or collide with a manifest or report file; rename the class"
    if len(name.encode()) > 200:
        return "a class name must be at most 200 bytes (it names folders and files)"
    return None


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    classes: list[str] = Field(description="class names in label order; they name the folders and the prompts")
    scrape: Scrape
    split: Split
    base: Base
    prompts: Prompts
    generate: Generate
    dreambooth: DreamBooth
    textual_inversion: TextualInversion
    img2img: Img2Img
    filter: Filter
    sources: Sources
    mix: Mix
    train: Train
    evaluate: Evaluate
    reference: Reference
    fid: Fid
    copies: Copies
    clip: Clip
    study: Study

    @model_validator(mode="after")
    def _classes(self):
        classes = self.classes
        if len(classes) < 2:
            raise _fail("classes", classes, "list at least two class names (a classifier needs two)")
        folded: dict[str, str] = {}
        tokens: dict[str, str] = {}
        for c in classes:
            problem = _class_name_problem(c)
            if problem:
                raise _fail("classes", c, problem)
            key = unicodedata.normalize("NFC", c).casefold()
            if key in folded:
                what = "the same name" if folded[key] == c else "the same name up to case"
                raise _fail(
                    "classes",
                    c,
                    f"it is {what} as {folded[key]!r} (folders and tokens would collide); class names must be unique",
                )
            folded[key] = c
            token = token_of(c).casefold()
            if token in tokens:
                raise _fail(
                    "classes",
                    c,
                    f"its Textual Inversion token {token_of(c)} is also {tokens[token]!r}'s; rename one of them",
                )
            tokens[token] = c
        if self.scrape.source == "digits":
            for c in classes:
                if c not in DIGIT_WORDS:
                    raise _fail("classes", c, "scrape.source=digits has these classes: " + ", ".join(DIGIT_WORDS))
        return self

    @model_validator(mode="after")
    def _sources_named(self):
        names = self.sources.names()
        if self.mix.source != "none" and self.mix.source not in names:
            raise _fail("mix.source", self.mix.source, "allowed: none, " + ", ".join(names))
        for s in self.study.sources:
            if s not in names:
                raise _fail("study.sources", s, "allowed (the none baseline is always included): " + ", ".join(names))
        return self

    @model_validator(mode="after")
    def _grid_fits(self):
        """Every mix the current params and the study grid ask for fits the images there will be."""
        n_max = self.split.original_per_class
        if n_max is None:  # known only after the split; `mix` checks it then
            if self.split.imbalance is not None:
                raise _fail(
                    "split.imbalance",
                    self.split.imbalance,
                    "an imbalanced split needs the largest class's size: set split.original_per_class",
                )
            return self
        sizes = sorted(set(imbalance_sizes(self.split, n_max, len(self.classes))))
        n_min = sizes[0]
        for key, count in (
            ("dreambooth.instance_images", self.dreambooth.instance_images),
            ("textual_inversion.images", self.textual_inversion.images),
        ):
            if count > n_min:
                raise _fail(
                    key, count, f"the smallest class of d_original has {n_min} images (split.*); use at most that many"
                )
        for (key, source, p), n_original in ((a, n) for a in asks(self) for n in sizes):
            c = mix_counts(n_original, self.mix, p, n_max)
            if c["real"] > c["available"]:
                raise _fail(
                    "mix.n_per_class",
                    self.mix.n_per_class,
                    f"at {key} = {p:g} the mix keeps {c['real']} real images per class but there are "
                    f"{c['available']} (split.original_per_class = {n_original} minus {c['val']} for "
                    "validation); lower mix.n_per_class or raise split.original_per_class",
                )
            if source == "none":
                continue
            have, have_key = source_count(self, source, n_original, c["val"])
            if c["synthetic"] > have:
                balance = self.mix.mode == "balance"
                value = getattr(getattr(self, have_key.split(".")[0]), have_key.split(".")[1])
                exact = (
                    self.sources.kinds()[source] in ("txt2img", "finetuned", "real")
                    and not candidates(self.sources, source) > 1.0
                )
                need = f"{c['n']} - {c['available']}" if balance else f"round({p:g} x {c['n']})"
                raise _fail(
                    "mix.mode" if balance else key,
                    "balance" if balance else p,
                    f"the mix needs {need} = {c['synthetic']} {source} images per class (n = {c['n']}: "
                    f"split.original_per_class = {n_original} minus {c['val']} for validation) but "
                    f"{have_key} = {value}"
                    + (
                        f"; raise {have_key} to at least {c['synthetic']}"
                        if exact
                        else f", which gives {have} a mix can use; raise {have_key}"
                    )
                    + " or lower split.original_per_class",
                )
        return self


# ------------------------------------------------------------------------------------------------
# Loading, and one sentence per error
# ------------------------------------------------------------------------------------------------


class _Refused(ValueError):
    """A rule's own sentence, raised inside a validator and passed through unchanged."""


def _fail(key: str, value: Any, allowed: str) -> _Refused:
    return _Refused(f"params.yaml: {key} = {value!r} is not allowed; {allowed}.")


TYPE_TEXT = {
    "int_type": "use a whole number",
    "int_from_float": "use a whole number",
    "float_type": "use a number (write 1.0e-4, not 1e-4, which YAML reads as text)",
    "finite_number": "use a finite number",
    "bool_type": "use true or false",
    "string_type": "use text",
    "list_type": "use a list",
    "dict_type": "it must be a mapping of keys to values",
    "model_type": "it must be a mapping of keys to values",
    "model_attributes_type": "it must be a mapping of keys to values",
}


def _known_keys(loc: tuple) -> list[str]:
    model: Any = Params
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        model = field.annotation
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _sentence(error: dict) -> str:
    """pydantic's first error as `params.yaml: <key> = <value> is not allowed; <what is allowed>.`"""
    loc = tuple(str(part) for part in error["loc"] if not isinstance(part, int))
    key, kind, ctx, value = ".".join(loc) or "params.yaml", error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "value_error" and isinstance(ctx.get("error"), _Refused):
        return str(ctx["error"])
    if kind == "missing":
        return (
            f"params.yaml: {key} is missing; params.yaml is the only place defaults are written, so copy the "
            "key from the repository's params.yaml (or a profile) and set its value."
        )
    if kind == "extra_forbidden":
        return f"params.yaml: {key} = {value!r} is not allowed; known keys are {', '.join(_known_keys(error['loc']))}."
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", ctx.get("expected", ""))
        return f"params.yaml: {key} = {value!r} is not allowed; allowed: {', '.join(allowed)}."
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("greater than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        word, name = bounds[kind]
        limit = ctx.get(name)
        return f"params.yaml: {key} = {value!r} is not allowed; it must be {word} {limit:g}."
    if kind == "value_error":
        return f"params.yaml: {key} = {value!r} is not allowed; {str(ctx.get('error', error['msg']))}."
    if kind in TYPE_TEXT:
        return f"params.yaml: {key} = {value!r} is not allowed; {TYPE_TEXT[kind]}."
    return f"params.yaml: {key} = {value!r} is not allowed; {error['msg']}."


def parse_params(raw: Any, where: str = "params.yaml") -> Params:
    """Validate a params mapping (as params.yaml holds it); raise ParamsError with one sentence that
    starts with `where`, the file."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{where} must be a mapping of sections.")
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        sentence = _sentence(e.errors(include_url=False)[0])
        raise ParamsError(where + sentence.removeprefix("params.yaml")) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} is missing; run the stage from the repository root.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{path} is not valid YAML ({' '.join(str(e).split())}).") from None
    return parse_params(raw, str(path) if path.name != "params.yaml" else "params.yaml")


# ------------------------------------------------------------------------------------------------
# The README's params table, from the field descriptions (a test keeps the README equal to it)
# ------------------------------------------------------------------------------------------------


def _is_model(annotation) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _rows(model: type[BaseModel], prefix: str):
    for name, field in model.model_fields.items():
        annotation, key = field.annotation, f"{prefix}{name}"
        if _is_model(annotation) and not field.description:
            yield from _rows(annotation, f"{key}.")
            continue
        yield f"| `{key}` | {field.description} |"
        entry = typing.get_args(annotation)[-1] if typing.get_origin(annotation) is dict else None
        if _is_model(entry):  # a registry: name -> settings
            yield from _rows(entry, f"{key}.<name>.")


def params_table() -> str:
    """Markdown: one row per key of params.yaml with its description."""
    return "\n".join(["| key | meaning |", "|---|---|", *_rows(Params, "")]) + "\n"


if __name__ == "__main__":
    print(params_table(), end="")
