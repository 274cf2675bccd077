"""Prompts per class: templates, plus an optional language-model expansion (the paper's GPT-3 idea).

A text-generation model answers questions such as "What does a {} look like?"; each answer is cut
to its first sentence (models run on into the next question), cleaned, made to name its class,
and deduplicated.
"""

from __future__ import annotations

import re

from diffaug.errors import DiffaugError
from diffaug.params import Prompts
from diffaug.progress import quiet_libraries

MAX_WORDS = 40  # CLIP reads 77 tokens; a short sentence keeps the class name inside them


def from_templates(classes: list[str], templates: tuple[str, ...]) -> list[dict]:
    return [{"class": c, "prompt": t.format(c), "origin": "template"} for c in classes for t in templates]


def clean(text: str, label: str) -> str | None:
    """The first sentence of a model's answer, tidied; None if nothing usable is left."""
    text = re.split(r"(?<=[.!?])\s|\n", text.strip(), maxsplit=1)[0]
    text = "".join(ch for ch in text if ch.isprintable() and ch != "\ufffd")  # broken bytes of a small model
    text = re.sub(r"\s+", " ", text).strip(" \"'`*-:#")
    text = text.rstrip(".!?").strip()
    words = text.split()
    if len(words) < 3 or not re.search(r"[A-Za-z]", text):
        return None
    text = " ".join(words[:MAX_WORDS])
    if label.lower() not in text.lower():
        text = f"a photo of a {label}, {text}"  # the image must still show this class
    return text


def dedupe(records: list[dict]) -> list[dict]:
    seen, out = set(), []
    for r in records:
        key = (r["class"], re.sub(r"\W+", " ", r["prompt"].lower()).strip())
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def load_llm(name: str, revision: str):
    """A causal language model and its tokenizer (safetensors only, never remote code)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_libraries()

    try:
        tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(name, revision=revision, use_safetensors=True)
    except (OSError, ValueError) as e:
        raise DiffaugError(
            f"the prompt model {name} (revision {revision}) could not be loaded ({str(e).splitlines()[0]}); "
            f"download it first (`hf download {name} --revision {revision}`), give a local folder, "
            "or set prompts.llm: null."
        ) from None
    return model.eval(), tokenizer


def from_llm(classes: list[str], params: Prompts, model, tokenizer) -> list[dict]:
    import torch

    torch.manual_seed(params.seed)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # decoder-only models continue from the right end
    records = []
    for c in classes:
        questions = [q.format(c) for q in params.llm_questions]
        batch = tokenizer(questions, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(
                **batch,
                do_sample=True,
                temperature=params.temperature,
                max_new_tokens=params.max_new_tokens,
                num_return_sequences=params.llm_per_question,
                pad_token_id=tokenizer.pad_token_id,
            )
        answers = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        for i, answer in enumerate(answers):
            text = clean(answer, c)
            if text:
                records.append(
                    {"class": c, "prompt": text, "origin": f"llm: {params.llm_questions[i // params.llm_per_question]}"}
                )
    return records


def build_prompts(classes: list[str], params: Prompts) -> list[dict]:
    records = from_templates(classes, params.templates)
    if params.llm:
        model, tokenizer = load_llm(params.llm, params.llm_revision)
        records += from_llm(classes, params, model, tokenizer)
    return dedupe(records)
