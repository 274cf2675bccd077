"""Typed, validated parameters: one dataclass per `params.yaml` section.

Every stage calls `load_params()` first, so a bad value stops the run in a second, with one
sentence naming the key, the value and what is allowed, before any output is touched.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from diffaug.errors import DiffaugError

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SYNTHETIC_SOURCES = ("vanilla", "dreambooth", "textual_inversion")
# The stage that writes each synthetic source, for the "source is missing" error.
SOURCE_STAGE = {
    "vanilla": "generate_vanilla",
    "dreambooth": "generate_finetuned@dreambooth",
    "textual_inversion": "generate_finetuned@textual_inversion",
}


class ParamsError(DiffaugError):
    """A value in params.yaml that is not allowed."""


@dataclass(frozen=True)
class Scrape:
    source: str = "digits"  # digits | folder | urls | search
    path: Optional[str] = None  # folder: class sub-folders; urls: CSV of url,label rows
    digits_size: int = 32  # digits: the 8x8 scans are upscaled to this side
    max_side: int = 0  # downscale larger images to this longest side; 0 keeps them
    max_pixels: int = 40_000_000  # larger images (width x height, read from the header) are refused
    workers: int = 8
    timeout: float = 10.0  # seconds per attempt: lookup, connect, every redirect, headers and body together
    retries: int = 3
    max_bytes: int = 20_000_000
    # search: an image search engine queried per class (the paper scraped the web)
    engine: str = "bing"
    endpoint: Optional[str] = None  # None: the engine's own address; tests point it at a local server
    queries: tuple[str, ...] = ("{} photo",)  # query templates, tried in order until per_class is reached
    per_class: int = 100  # usable (valid, unique) images to collect per class
    licence: str = "any"  # the engine's licence filter (engines do not report an image's licence)
    delay: float = 1.0  # seconds between two requests to the same host (search engine or image host)


@dataclass(frozen=True)
class Split:
    original_per_class: Optional[int] = 120  # None: everything left after the test split
    test_per_class: int = 50
    dedupe_distance: int = 2  # pHash Hamming distance that counts as a near-duplicate
    seed: int = 0


@dataclass(frozen=True)
class Mix:
    source: str = "none"  # none | vanilla | dreambooth | textual_inversion
    p: float = 0.0
    n_per_class: Optional[int] = None  # None: all real training images of the class
    mode: str = "replace"  # replace: p*n synthetic + (1-p)*n real; add: n real + p*n synthetic
    val_fraction: float = 0.15
    val_from: str = "original"  # original: real images only; mixed: the paper's behaviour
    seed: int = 0


@dataclass(frozen=True)
class Train:
    regime: str = "scratch"  # scratch | finetune | frozen
    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5.0e-4
    lr_schedule: str = "cosine"  # constant | cosine
    image_size: int = 32
    small_stem: str = "auto"  # auto (<= 64 px) | true | false: 3x3 stem, no max-pool
    augment: str = "standard"  # none | standard | randaugment
    hflip: bool = False  # horizontal flips (off for digits and text)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    seed: int = 0


@dataclass(frozen=True)
class Reference:
    """A classifier of d_original alone: it scores how recognisable synthetic images are."""
    epochs: int = 15
    image_size: int = 32
    small_stem: str = "auto"
    seed: int = 0


@dataclass(frozen=True)
class Evaluate:
    batch_size: int = 256


@dataclass(frozen=True)
class Fid:
    """FID and KID between d_original and each synthetic source (stages fid_reference, fid@<source>)."""
    features: str = "reference"  # reference (offline: the reference ResNet-18) | inception (pytorch-fid, the paper)
    batch_size: int = 50
    kid_subsets: int = 100  # KID: random subsets averaged (torch-fidelity's default)
    kid_subset_size: int = 1000  # capped at the smaller set of each comparison
    device: str = "auto"
    seed: int = 0


@dataclass(frozen=True)
class Clip:
    """Zero-shot CLIP on data/test (stage clip_zero_shot), the paper's second baseline."""
    model: Optional[str] = None  # None: skipped; a hub id (e.g. openai/clip-vit-base-patch32) or a local folder
    revision: str = "main"  # pin a commit for a reproducible number
    template: str = "a photo of a {}"
    batch_size: int = 64
    device: str = "auto"


LLM_QUESTIONS = (  # the paper's GPT-3 templates
    "Describe what a {} looks like?",
    "How can you identify a {}?",
    "What does a {} look like?",
    "Describe an image from the internet of a {}?",
    "A caption of an image of {}:",
)


@dataclass(frozen=True)
class Base:
    model: str = "builtin:tiny"  # builtin:tiny | a hub model id
    revision: str = "main"  # hub: branch, tag or commit; resolved to a commit and recorded
    tiny_steps: int = 800  # builtin: denoiser pretraining steps
    seed: int = 0


@dataclass(frozen=True)
class Prompts:
    templates: tuple[str, ...] = ("a photo of a {}",)
    llm: Optional[str] = None  # a transformers text-generation model: local path or hub id
    llm_revision: str = "main"
    llm_questions: tuple[str, ...] = LLM_QUESTIONS
    llm_per_question: int = 2
    temperature: float = 0.9
    max_new_tokens: int = 40
    seed: int = 0


@dataclass(frozen=True)
class Generate:
    per_class: int = 100
    scheduler: str = "dpm++"  # dpm++ | lms | ddim | pndm | euler | euler_a
    steps: int = 20
    guidance: float = 7.5
    negative_prompt: str = ""
    resolution: Optional[int] = None  # None: the model's native size
    save_size: Optional[int] = None  # None: keep the generated size
    batch_size: int = 16
    dtype: str = "auto"  # auto | float32 | float16 | bfloat16
    compile: bool = False
    cpu_offload: bool = False
    safety_checker: bool = False
    device: str = "auto"
    launcher: str = "python"  # or e.g. "accelerate launch --num_processes 4" for several GPUs
    seed: int = 0


@dataclass(frozen=True)
class DreamBooth:
    """One fine-tuned model per class (DreamBooth: Ruiz et al. 2023; the diffusers example's options)."""
    instance_images: int = 5  # real images per class, drawn (seeded) from d_original
    prompt: str = "a photo of sks {}"  # instance prompt with the rare identifier; also the generation prompt
    class_prompt: str = "a photo of {}"  # prior preservation prompt
    prior_preservation: bool = True
    class_images: int = 50  # prior images generated by the base model
    prior_loss_weight: float = 1.0
    prior_steps: int = 20  # generation steps for the prior images (DPM-Solver++)
    prior_guidance: float = 7.5
    mode: str = "full"  # full (the whole UNet) | lora
    lora_rank: int = 4
    train_text_encoder: bool = False
    steps: int = 400
    lr: float = 5.0e-6
    scale_lr: bool = False  # lr x batch_size x gradient_accumulation x processes
    batch_size: int = 1
    gradient_accumulation: int = 1
    mixed_precision: str = "auto"  # auto (bf16/fp16 on CUDA, none on CPU) | no | fp16 | bf16
    gradient_checkpointing: bool = False
    use_8bit_adam: bool = False
    resolution: Optional[int] = None  # None: the model's native size
    device: str = "auto"
    launcher: str = "python"
    seed: int = 0


@dataclass(frozen=True)
class TextualInversion:
    """A new token per class whose embedding alone learns the class (Gal et al. 2022)."""
    images: int = 5  # real images per class, drawn (seeded) from d_original
    num_vectors: int = 1  # embedding vectors behind the token <class>
    init_word: Optional[str] = None  # None: the class name
    templates: tuple[str, ...] = ("object",)  # object: diffusers' object templates; or your own, {} = token
    prompt: str = "a photo of a {}"  # generation prompt; {} = the learned token
    init_reg: float = 0.0  # weight of the squared L2 pull of the embedding toward its init word's
    steps: int = 3000
    lr: float = 5.0e-4
    scale_lr: bool = True  # lr x batch_size x gradient_accumulation x processes (the diffusers default)
    batch_size: int = 1
    gradient_accumulation: int = 4
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = False
    resolution: Optional[int] = None
    device: str = "auto"
    launcher: str = "python"
    seed: int = 0


@dataclass(frozen=True)
class Study:
    """`python -m diffaug.study`: the grid it queues as DVC experiments. No stage reads it."""
    sources: tuple[str, ...] = ("vanilla",)  # synthetic sources; the `none` baseline is always added
    p: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    regimes: tuple[tuple[str, Optional[int]], ...] = (("scratch", None),)  # (regime, epochs; None: train.epochs)
    seeds: tuple[int, ...] = (0,)  # each sets train.seed and mix.seed
    jobs: int = 1  # experiments run in parallel (`dvc queue start -j`)
    randaugment: bool = True  # also queue the paper's RandAugment baseline (only original, p = 0)


def _study(raw: Any) -> Study:
    """The study section has lists of numbers and a regime -> epochs mapping, which `_section` does not type."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        _fail("study", raw, "it must be a mapping of keys to values")
    known = [f.name for f in dataclasses.fields(Study)]
    for key in raw:
        if key not in known:
            _fail(f"study.{key}", raw[key], f"known keys are {', '.join(known)}")
    d = Study()
    sources = raw.get("sources", list(d.sources))
    if not isinstance(sources, list) or not all(isinstance(x, str) for x in sources):
        _fail("study.sources", sources, "use a list of synthetic sources")
    p = raw.get("p", list(d.p))
    if not isinstance(p, list) or not p or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in p):
        _fail("study.p", p, "use a non-empty list of proportions")
    regimes = raw.get("regimes", dict(d.regimes))
    if not isinstance(regimes, dict) or not regimes or not all(
            e is None or (isinstance(e, int) and not isinstance(e, bool)) for e in regimes.values()):
        _fail("study.regimes", regimes, "use a mapping of regime to epochs, e.g. {scratch: 200, finetune: 20}")
    seeds = raw.get("seeds", list(d.seeds))
    if not isinstance(seeds, list) or not seeds or not all(isinstance(x, int) and not isinstance(x, bool) for x in seeds):
        _fail("study.seeds", seeds, "use a non-empty list of whole numbers")
    jobs = raw.get("jobs", d.jobs)
    if not isinstance(jobs, int) or isinstance(jobs, bool):
        _fail("study.jobs", jobs, "use a whole number")
    randaugment = raw.get("randaugment", d.randaugment)
    if not isinstance(randaugment, bool):
        _fail("study.randaugment", randaugment, "use true or false")
    return Study(tuple(sources), tuple(float(x) for x in p), tuple(regimes.items()), tuple(seeds), jobs, randaugment)


@dataclass(frozen=True)
class Params:
    classes: tuple[str, ...] = DIGIT_WORDS
    scrape: Scrape = field(default_factory=Scrape)
    base: Base = field(default_factory=Base)
    prompts: Prompts = field(default_factory=Prompts)
    generate: Generate = field(default_factory=Generate)
    dreambooth: DreamBooth = field(default_factory=DreamBooth)
    textual_inversion: TextualInversion = field(default_factory=TextualInversion)
    split: Split = field(default_factory=Split)
    mix: Mix = field(default_factory=Mix)
    train: Train = field(default_factory=Train)
    evaluate: Evaluate = field(default_factory=Evaluate)
    reference: Reference = field(default_factory=Reference)
    fid: Fid = field(default_factory=Fid)
    clip: Clip = field(default_factory=Clip)
    study: Study = field(default_factory=Study)


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ParamsError(f"params.yaml: {key} = {value!r} is not allowed; {allowed}.")


def _coerce(key: str, value: Any, default: Any, annotation: str) -> Any:
    """Check a value's type against its field; ints are accepted where floats are expected."""
    optional = annotation.startswith("Optional")
    if value is None:
        if optional:
            return None
        _fail(key, value, "it needs a value")
    base = type(default) if default is not None else (str if "str" in annotation else int)
    if base is tuple:
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
            _fail(key, value, "use a non-empty list of text")
        return tuple(value)
    if base is bool:
        if not isinstance(value, bool):
            _fail(key, value, "use true or false")
        return value
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            _fail(key, value, "use a number (write 1.0e-4, not 1e-4, which YAML reads as text)")
        return float(value)
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, value, "use a whole number")
        return value
    if isinstance(value, bool):  # `small_stem: true` is written as YAML's boolean
        return str(value).lower()
    if not isinstance(value, str):
        _fail(key, value, "use text")
    return value


def _section(cls: type, name: str, raw: Any) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        _fail(name, raw, "it must be a mapping of keys to values")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        _fail(f"{name}.{unknown[0]}", raw[unknown[0]], f"known keys are {', '.join(fields)}")
    values = {}
    for fname, f in fields.items():
        default = f.default
        values[fname] = _coerce(f"{name}.{fname}", raw.get(fname, default), default, str(f.type))
    return cls(**values)


def _one_of(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        _fail(key, value, "allowed: " + ", ".join(str(a) for a in allowed))


def _at_least(key: str, value: Optional[float], low: float, strict: bool = False) -> None:
    if value is not None and (value <= low if strict else value < low):
        _fail(key, value, f"it must be {'greater than' if strict else 'at least'} {low:g}")


def _check_device(key: str, value: str) -> None:
    if not (value in ("auto", "cpu", "cuda", "mps") or (value.startswith("cuda:") and value[5:].isdigit())):
        _fail(key, value, "allowed: auto, cpu, cuda, cuda:N, mps")


def _check_launcher(key: str, value: str) -> None:
    if not (value == "python" or value.startswith("accelerate launch")):
        _fail(key, value, "use python, or accelerate launch with its options")


def _check_template(key: str, text: str, fields: tuple[str, ...] = ()) -> None:
    if text.count("{}") != 1:
        _fail(key, text, "a prompt template needs exactly one {} where the class (or its token) goes")
    try:
        text.format("", **{f: "" for f in fields})
    except (KeyError, IndexError, ValueError):
        named = " and " + ", ".join("{" + f + "}" for f in fields) if fields else ""
        _fail(key, text, f"a prompt template may hold only {{}}{named}; double other braces ({{{{ }}}})")


def validate(params: Params) -> Params:
    """Check the relations between values that types alone cannot express."""
    classes = params.classes
    if not classes:
        _fail("classes", list(classes), "list at least one class name")
    if len(set(classes)) != len(classes):
        _fail("classes", list(classes), "class names must be unique")
    for c in classes:
        if not c or "/" in c or "\\" in c or c.startswith("."):
            _fail("classes", c, "a class name must be a plain folder name")

    s = params.scrape
    _one_of("scrape.source", s.source, ("digits", "folder", "urls", "search"))
    if s.source == "digits":
        for c in classes:
            _one_of("classes", c, DIGIT_WORDS)
    elif s.source == "search":
        from diffaug.data.search import ENGINES, LICENCE_FILTERS

        _one_of("scrape.engine", s.engine, tuple(ENGINES))
        _one_of("scrape.licence", s.licence, tuple(LICENCE_FILTERS))
        for query in s.queries:
            _check_template("scrape.queries", query)
        _at_least("scrape.per_class", s.per_class, 1)
        _at_least("scrape.delay", s.delay, 0)
    elif not s.path:
        _fail("scrape.path", s.path, f"scrape.source={s.source} needs a path to read from")
    _at_least("scrape.digits_size", s.digits_size, 8)
    _at_least("scrape.max_side", s.max_side, 0)
    _at_least("scrape.max_pixels", s.max_pixels, 1)
    from PIL import Image  # Pillow's own bomb guard stays the ceiling, so the param means what it says

    if s.max_pixels > Image.MAX_IMAGE_PIXELS:
        _fail("scrape.max_pixels", s.max_pixels, f"it must be at most {Image.MAX_IMAGE_PIXELS} (Pillow's limit)")
    _at_least("scrape.workers", s.workers, 1)
    _at_least("scrape.timeout", s.timeout, 0, strict=True)
    _at_least("scrape.retries", s.retries, 0)
    _at_least("scrape.max_bytes", s.max_bytes, 1)

    sp = params.split
    _at_least("split.original_per_class", sp.original_per_class, 1)
    _at_least("split.test_per_class", sp.test_per_class, 1)
    if not 0 <= sp.dedupe_distance <= 64:
        _fail("split.dedupe_distance", sp.dedupe_distance, "use 0 to 64 bits (0 = exact pHash match)")

    m = params.mix
    _one_of("mix.source", m.source, ("none",) + SYNTHETIC_SOURCES)
    if not 0.0 <= m.p <= 1.0:
        _fail("mix.p", m.p, "use a proportion between 0.0 and 1.0")
    _at_least("mix.n_per_class", m.n_per_class, 1)
    _one_of("mix.mode", m.mode, ("replace", "add"))
    if not 0.0 <= m.val_fraction < 1.0:
        _fail("mix.val_fraction", m.val_fraction, "use a fraction from 0.0 up to (not including) 1.0")
    _one_of("mix.val_from", m.val_from, ("original", "mixed"))

    b = params.base
    if not b.model or not (b.model.startswith("builtin:") or b.model.count("/") == 1 or Path(b.model).is_dir()):
        _fail("base.model", b.model, "use builtin:tiny, a hub id like stable-diffusion-v1-5/stable-diffusion-v1-5, "
              "or a local folder")
    if b.model.startswith("builtin:"):
        _one_of("base.model", b.model, ("builtin:tiny",))
    _at_least("base.tiny_steps", b.tiny_steps, 1)

    pr = params.prompts
    for key, texts in (("prompts.templates", pr.templates), ("prompts.llm_questions", pr.llm_questions)):
        for text in texts:
            _check_template(key, text)
    _at_least("prompts.llm_per_question", pr.llm_per_question, 1)
    _at_least("prompts.temperature", pr.temperature, 0, strict=True)
    _at_least("prompts.max_new_tokens", pr.max_new_tokens, 1)

    g = params.generate
    _at_least("generate.per_class", g.per_class, 1)
    _one_of("generate.scheduler", g.scheduler, ("dpm++", "lms", "ddim", "pndm", "euler", "euler_a"))
    _at_least("generate.steps", g.steps, 1)
    _at_least("generate.guidance", g.guidance, 0)
    for key in ("resolution", "save_size"):
        value = getattr(g, key)
        if value is not None and (value < 8 or value % 8):
            _fail(f"generate.{key}", value, "use a multiple of 8 (or null)")
    _at_least("generate.batch_size", g.batch_size, 1)
    _one_of("generate.dtype", g.dtype, ("auto", "float32", "float16", "bfloat16"))
    _check_device("generate.device", g.device)
    _check_launcher("generate.launcher", g.launcher)

    d = params.dreambooth
    _at_least("dreambooth.instance_images", d.instance_images, 1)
    _check_template("dreambooth.prompt", d.prompt)
    _check_template("dreambooth.class_prompt", d.class_prompt)
    _at_least("dreambooth.class_images", d.class_images, 1)
    _at_least("dreambooth.prior_loss_weight", d.prior_loss_weight, 0)
    _at_least("dreambooth.prior_steps", d.prior_steps, 1)
    _at_least("dreambooth.prior_guidance", d.prior_guidance, 0)
    _one_of("dreambooth.mode", d.mode, ("full", "lora"))
    _at_least("dreambooth.lora_rank", d.lora_rank, 1)
    ti = params.textual_inversion
    _at_least("textual_inversion.images", ti.images, 1)
    _at_least("textual_inversion.num_vectors", ti.num_vectors, 1)
    _at_least("textual_inversion.init_reg", ti.init_reg, 0)
    for template in ti.templates:
        if template != "object":
            _check_template("textual_inversion.templates", template, ("class",))
    _check_template("textual_inversion.prompt", ti.prompt, ("class",))
    for name, f in (("dreambooth", d), ("textual_inversion", ti)):
        _at_least(f"{name}.steps", f.steps, 1)
        _at_least(f"{name}.lr", f.lr, 0, strict=True)
        _at_least(f"{name}.batch_size", f.batch_size, 1)
        _at_least(f"{name}.gradient_accumulation", f.gradient_accumulation, 1)
        _one_of(f"{name}.mixed_precision", f.mixed_precision, ("auto", "no", "fp16", "bf16"))
        if f.resolution is not None and (f.resolution < 8 or f.resolution % 8):
            _fail(f"{name}.resolution", f.resolution, "use a multiple of 8 (or null)")
        _check_device(f"{name}.device", f.device)
        _check_launcher(f"{name}.launcher", f.launcher)

    t = params.train
    _one_of("train.regime", t.regime, ("scratch", "finetune", "frozen"))
    _at_least("train.epochs", t.epochs, 1)
    _at_least("train.batch_size", t.batch_size, 1)
    _at_least("train.lr", t.lr, 0, strict=True)
    _at_least("train.momentum", t.momentum, 0)
    _at_least("train.weight_decay", t.weight_decay, 0)
    _one_of("train.lr_schedule", t.lr_schedule, ("constant", "cosine"))
    _at_least("train.image_size", t.image_size, 8)
    _one_of("train.small_stem", t.small_stem, ("auto", "true", "false"))
    _one_of("train.augment", t.augment, ("none", "standard", "randaugment"))
    _check_device("train.device", t.device)

    st = params.study
    for source in st.sources:
        _one_of("study.sources", source, SYNTHETIC_SOURCES)
    for p in st.p:
        if not 0.0 <= p <= 1.0:
            _fail("study.p", p, "use proportions between 0.0 and 1.0")
    for regime, epochs in st.regimes:
        _one_of("study.regimes", regime, ("scratch", "finetune", "frozen"))
        _at_least(f"study.regimes.{regime}", epochs, 1)
    _at_least("study.jobs", st.jobs, 1)

    _at_least("evaluate.batch_size", params.evaluate.batch_size, 1)
    _at_least("reference.epochs", params.reference.epochs, 1)
    _at_least("reference.image_size", params.reference.image_size, 8)
    _one_of("reference.small_stem", params.reference.small_stem, ("auto", "true", "false"))

    f = params.fid
    _one_of("fid.features", f.features, ("reference", "inception"))
    _at_least("fid.batch_size", f.batch_size, 1)
    _at_least("fid.kid_subsets", f.kid_subsets, 1)
    _at_least("fid.kid_subset_size", f.kid_subset_size, 2)
    _check_device("fid.device", f.device)
    cl = params.clip
    if cl.model is not None and not (cl.model.count("/") == 1 or Path(cl.model).is_dir()):
        _fail("clip.model", cl.model, "use null, a hub id like openai/clip-vit-base-patch32, or a local folder")
    _check_template("clip.template", cl.template)
    _at_least("clip.batch_size", cl.batch_size, 1)
    _check_device("clip.device", cl.device)
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} is missing; run the stage from the repository root.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{path} is not valid YAML ({e}).") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path} must be a mapping of sections.")
    sections = {f.name: f for f in dataclasses.fields(Params)}
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        _fail(unknown[0], raw[unknown[0]], f"known sections are {', '.join(sections)}")
    classes = raw.get("classes", list(DIGIT_WORDS))
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        _fail("classes", classes, "use a list of class names")
    params = Params(
        classes=tuple(classes),
        scrape=_section(Scrape, "scrape", raw.get("scrape")),
        base=_section(Base, "base", raw.get("base")),
        prompts=_section(Prompts, "prompts", raw.get("prompts")),
        generate=_section(Generate, "generate", raw.get("generate")),
        dreambooth=_section(DreamBooth, "dreambooth", raw.get("dreambooth")),
        textual_inversion=_section(TextualInversion, "textual_inversion", raw.get("textual_inversion")),
        split=_section(Split, "split", raw.get("split")),
        mix=_section(Mix, "mix", raw.get("mix")),
        train=_section(Train, "train", raw.get("train")),
        evaluate=_section(Evaluate, "evaluate", raw.get("evaluate")),
        reference=_section(Reference, "reference", raw.get("reference")),
        fid=_section(Fid, "fid", raw.get("fid")),
        clip=_section(Clip, "clip", raw.get("clip")),
        study=_study(raw.get("study")),
    )
    return validate(params)
