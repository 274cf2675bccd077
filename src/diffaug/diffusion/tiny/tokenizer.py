"""The built-in model's tokenizer: a CLIP byte-level BPE vocabulary written from scratch.

It merges a fixed list of words into single tokens; any other text still tokenises (shorter pieces,
then byte characters), but the model never saw it in training: `unknown_words` names such words,
so a prompt for a class the model cannot draw is reported instead of silently drawing a digit.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from diffaug.params import DIGIT_WORDS

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# Prompt length in tokens (CLIP's is 77). Short on purpose: the UNet's cross-attention and the text
# encoder's causal attention average over all positions at first, and 60-odd padding positions dilute
# the one token that names the digit; with 77 the prompt was ignored for the first ~500 steps.
# 16 holds every Textual Inversion template ("a close-up photo of the <x>" is 10 with BOS/EOS).
MAX_TOKENS = 16

# Whole words the vocabulary merges into single tokens: the prompt words of the project's stages
# (vanilla, DreamBooth "a photo of sks seven", the Textual Inversion templates) plus the digit words.
VOCAB_WORDS = list(DIGIT_WORDS) + [
    "a",
    "an",
    "the",
    "of",
    "photo",
    "picture",
    "image",
    "rendering",
    "drawing",
    "digit",
    "digits",
    "number",
    "handwritten",
    "written",
    "printed",
    "sks",
    "in",
    "on",
    "with",
    "and",
    "style",
    "black",
    "white",
    "dark",
    "small",
    "large",
    "clean",
    "cropped",
    "close",
    "up",
    "good",
    "bad",
    "my",
    "cool",
    "bright",
    "dirty",
    "nice",
    "weird",
    "rendition",
]


def _byte_chars() -> list[str]:
    """CLIP/GPT-2's printable stand-in for each of the 256 bytes (tokenizers' ByteLevel uses the same)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply BPE merges the way the tokenizer does: repeatedly merge the best-ranked adjacent pair."""
    while len(symbols) > 1:
        pairs = [(ranks.get(p, math.inf), i) for i, p in enumerate(zip(symbols, symbols[1:]))]
        rank, i = min(pairs)
        if rank == math.inf:
            break
        symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2 :]
    return symbols


def bpe_vocabulary(words: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Vocabulary (token list, in id order) and merges so that each of `words` is one token.

    Layout as in CLIP: 256 byte characters, the same with the end-of-word mark `</w>`, merged tokens,
    then the two special tokens. Merges are added word by word, each after simulating the merges so far:
    a new merge ranks below all earlier ones, so it never changes how an earlier word is split.
    """
    base = _byte_chars()
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        chars = [base[b] for b in word.encode("utf-8")]
        symbols = _bpe(chars[:-1] + [chars[-1] + "</w>"], ranks)
        while len(symbols) > 1:  # merge left to right until the word is whole
            pair = (symbols[0], symbols[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            symbols = _bpe(symbols, ranks)
    vocab = base + [c + "</w>" for c in base] + [a + b for a, b in merges] + [BOS, EOS]
    return vocab, merges


def build_tokenizer(folder: str | os.PathLike, words: list[str] = VOCAB_WORDS):
    """Write vocab.json and merges.txt (CLIP's file formats) to `folder` and load them as a CLIPTokenizer."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = bpe_vocabulary(words)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tokenizer = CLIPTokenizer.from_pretrained(str(folder), model_max_length=MAX_TOKENS)
    split = [w for w in words if len(tokenizer(w, add_special_tokens=False).input_ids) != 1]
    if split:  # the tokenizer must agree with the simulation above, or prompts would not be what we trained
        raise RuntimeError(f"the written vocabulary splits {split[:3]} into several tokens: bpe_vocabulary is wrong")
    return tokenizer


def unknown_words(prompts: list[str]) -> list[str]:
    """Words of `prompts` outside the built-in vocabulary (Textual Inversion tokens `<...>` excepted):
    the model never learned them, so it draws something it knows instead."""
    known = set(VOCAB_WORDS)
    words = {w for p in prompts for w in re.sub(r"<[^<>\s]+>", " ", p.lower()).replace(",", " ").split()}
    return sorted(w for w in words if w not in known)
