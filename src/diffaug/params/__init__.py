"""Typed, validated parameters: one pydantic model per `params.yaml` section.

params.yaml is the only place a default is written: every field here is required, so a params file
missing a key stops with a sentence naming it instead of silently getting another value. Bounds and
allowed values sit beside each field; rules that relate two sections are the validators of `Params`.
A bad value stops with one sentence naming the key, the value and what is allowed.

The models are schema only: counting that shapes a stage's output (how many images a mix draws, a
generation stage makes, a class keeps) lives in rules.py, a dep of the stages that count, and
the checks here call it. Besides that, the package imports nothing from the project but the error
type, so every stage can load params without the scraper, torch or diffusers.

The modules, by concern: `fields` (vocabularies, field types, the `Section` base), `data`, `diffusion`,
`classify`, `sources` and `study` (the sections), `root` (`Params` and the checks across sections),
`errors` (one sentence per refused value), `load` (reading params.yaml) and `table` (the reference page).
"""

from diffaug.params.classify import Clip, Evaluate, Fid, Reference, Train
from diffaug.params.data import Copies, Mix, Scrape, Split
from diffaug.params.diffusion import Base, DreamBooth, Filter, Generate, Img2Img, Prompts, TextualInversion
from diffaug.params.errors import ParamsError
from diffaug.params.fields import DIGIT_WORDS, LICENCES, RESERVED_NAMES, SEARCH_ENGINES, Section
from diffaug.params.load import load_params, parse_params
from diffaug.params.root import Params
from diffaug.params.sources import SOURCE_KINDS, Filtered, Finetuned, Img2ImgSource, Real, Sources, Txt2Img
from diffaug.params.study import Study
from diffaug.params.table import params_table

__all__ = [
    "DIGIT_WORDS",
    "LICENCES",
    "RESERVED_NAMES",
    "SEARCH_ENGINES",
    "SOURCE_KINDS",
    "Base",
    "Clip",
    "Copies",
    "DreamBooth",
    "Evaluate",
    "Fid",
    "Filter",
    "Filtered",
    "Finetuned",
    "Generate",
    "Img2Img",
    "Img2ImgSource",
    "Mix",
    "Params",
    "ParamsError",
    "Prompts",
    "Real",
    "Reference",
    "Scrape",
    "Section",
    "Sources",
    "Split",
    "Study",
    "TextualInversion",
    "Train",
    "Txt2Img",
    "load_params",
    "params_table",
    "parse_params",
]
