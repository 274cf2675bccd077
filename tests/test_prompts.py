"""prompts: templates per class, and the language-model expansion with a tiny random GPT-2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diffaug.diffusion.prompts import build_prompts, clean, dedupe, from_templates
from helpers import section

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """A random 2-layer GPT-2 with a real (byte-level BPE) tokenizer, saved as a local model folder."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("gpt2")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        ["a photo of a cat that is furry and small. Describe what it looks like?"] * 10,
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=128,
            n_embd=32,
            n_layer=2,
            n_head=2,
            bos_token_id=tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder, safe_serialization=True)
    return str(folder)


def test_templates_per_class():
    records = from_templates(["cat", "dog"], ("a photo of a {}", "a drawing of a {}"))
    assert [r["prompt"] for r in records] == [
        "a photo of a cat",
        "a drawing of a cat",
        "a photo of a dog",
        "a drawing of a dog",
    ]
    assert {r["class"] for r in records[:2]} == {"cat"}


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  A small furry cat with whiskers. How can you identify a dog? A dog has", "A small furry cat with whiskers"),
        ('"It has four legs and a tail"\nQ: What does', "a photo of a cat, It has four legs and a tail"),
        ("cat", None),
        ("!!! ... ???", None),
        ("a \ufffd\ufffd cat \x00 sits here", "a cat sits here"),
    ],
)
def test_clean_keeps_the_first_sentence_and_names_the_class(raw, expected):
    assert clean(raw, "cat") == expected


def test_dedupe_ignores_case_and_punctuation():
    records = [
        {"class": "cat", "prompt": "A furry cat."},
        {"class": "cat", "prompt": "a furry cat"},
        {"class": "dog", "prompt": "a furry cat"},
    ]
    assert len(dedupe(records)) == 2


def test_llm_expansion_is_seeded_and_clean(tiny_gpt2):
    params = section(
        "prompts", templates=["a photo of a {}"], llm=tiny_gpt2, llm_per_question=2, max_new_tokens=12, seed=3
    )
    records = build_prompts(["cat", "dog"], params)
    assert records == build_prompts(["cat", "dog"], params)
    llm = [r for r in records if r["origin"].startswith("llm")]
    assert llm, "the model's answers should give at least one usable prompt"
    for r in llm:
        assert r["class"] in r["prompt"].lower() and "\n" not in r["prompt"] and len(r["prompt"].split()) <= 45
    assert {r["prompt"] for r in records if r["origin"] == "template"} == {"a photo of a cat", "a photo of a dog"}


def test_missing_llm_is_one_clear_sentence(tmp_path):
    """Offline without the model: the stage exits 2 with one sentence naming it and how to get it."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["prompts"]["llm"] = "openai-community/gpt2"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    # A fresh process, so the Hugging Face libraries read HF_HUB_OFFLINE when they are imported.
    proc = subprocess.run(
        [sys.executable, "-m", "diffaug.stages.prompts"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={
            "PYTHONPATH": str(REPO / "src"),
            "PATH": "/usr/bin:/bin",
            "HF_HUB_OFFLINE": "1",
            "HF_HOME": str(tmp_path / "hf"),
        },
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: the prompt model openai-community/gpt2 (revision main) could not be loaded")
    assert "hf download openai-community/gpt2" in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert not (tmp_path / "data/prompts.json").exists()


def test_stage_writes_prompts_json(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["classes"] = ["three", "seven"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(
        [sys.executable, "-m", "diffaug.stages.prompts"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    )
    records = json.loads((tmp_path / "data/prompts.json").read_text())
    assert [r["class"] for r in records] == ["three", "seven"]
    assert all(r["prompt"].endswith(r["class"]) for r in records)
