"""The README's params table is the one `python -m diffaug.config` generates from the params models."""

from pathlib import Path

from diffaug.config import params_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_lists_every_param_as_the_models_describe_it():
    assert params_table() in README.read_text(), (
        "README.md's params table is out of date: paste the output of `PYTHONPATH=src python -m diffaug.config`"
    )
