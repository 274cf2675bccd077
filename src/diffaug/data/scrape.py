"""Collecting `d_raw`: the sources and the shared validate / dedupe / write step.

Every source yields `Candidate`s (a label, where it came from, and the file to decode or trusted pixels);
`collect` turns them into `<out>/<class>/<sha256[:16]>.png` files and a provenance manifest. Downloads
stay in the cache folder until `collect` decodes them, one at a time, so memory does not grow with the
number of rows.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from diffaug.data.candidates import Candidate, reusable_image
from diffaug.data.download import Fetched, Fetcher
from diffaug.data.images import NotAnImage, decode_image, png_bytes
from diffaug.data.search import search
from diffaug.errors import DiffaugError
from diffaug.io import cache_dir, require_utf8_names, sha256_bytes, write_csv
from diffaug.params import DIGIT_WORDS, Scrape

# page_url: the web page showing the image (search results); licence: what is known of it, empty if
# nothing is (search engines do not report licences; the built-in digits are CC BY 4.0).
MANIFEST_COLUMNS = ["class", "file", "source", "sha256", "width", "height", "page_url", "licence"]
DIGITS_LICENCE = "CC BY 4.0 (UCI optical recognition of handwritten digits)"


def digits(classes: tuple[str, ...], size: int) -> Iterator[Candidate]:
    """scikit-learn's handwritten digits (1,797 8x8 scans), dark ink on white, upscaled."""
    from sklearn.datasets import load_digits

    data = load_digits()
    wanted = {DIGIT_WORDS.index(c): c for c in classes}
    for i, (pixels, target) in enumerate(zip(data.images, data.target)):
        if int(target) not in wanted:
            continue
        ink = np.clip(pixels / 16.0, 0.0, 1.0)
        gray = Image.fromarray(np.round(255 * (1.0 - ink)).astype(np.uint8), mode="L")
        image = gray.resize((size, size), Image.Resampling.BICUBIC).convert("RGB")
        yield Candidate(wanted[int(target)], f"sklearn:load_digits/{i}", image=image, licence=DIGITS_LICENCE)


def folder(root: str | Path, classes: tuple[str, ...]) -> Iterator[Candidate]:
    """A dataset laid out as `<root>/<class>/...` (files at any depth below the class folder)."""
    root = Path(root)
    if not root.is_dir():
        raise DiffaugError(f"scrape.path {root} is not a folder; point it at a folder of class sub-folders.")
    require_utf8_names(root)  # before anything is read: the manifest could not hold such a name
    folders = class_folders(root, classes)
    for c in classes:
        for path, reason in sorted(_walk(folders[c])):
            if reason:
                yield Candidate(c, str(path), error=LINK_ERRORS[reason], reason=reason)
            elif path.name.startswith("."):  # .DS_Store and friends: counted, so nothing disappears unexplained
                yield Candidate(c, str(path), error="a hidden file", reason="hidden_file")
            else:
                yield Candidate(c, str(path), file=path)


LINK_ERRORS = {
    # DVC hashes a linked file's content but skips a linked folder: its images would change without a rerun.
    "symlinked_folder": "a symbolic link to a folder, not followed (DVC does not hash what it holds, so a change "
    "there would not rerun scrape); copy the folder in or bind-mount it",
    "broken_link": "a symbolic link to nothing",
}


def _walk(folder: Path) -> Iterator[tuple[Path, str]]:
    """(path, skip reason or "") for every file below `folder`; symbolic links to folders (loops included)
    are reported, not walked."""
    for entry in folder.iterdir():
        if entry.is_dir() and entry.is_symlink():
            yield entry, "symlinked_folder"
        elif entry.is_dir():
            yield from _walk(entry)
        elif entry.is_file():
            yield entry, ""
        elif entry.is_symlink():
            yield entry, "broken_link"


def class_folders(root: Path, classes: tuple[str, ...]) -> dict[str, Path]:
    """Each class's folder, matched by its NFC form: macOS writes `käse` decomposed (NFD), and class names are NFC."""
    found: dict[str, list[Path]] = {}
    for sub in sorted(root.iterdir()):
        if sub.is_dir():
            found.setdefault(unicodedata.normalize("NFC", sub.name), []).append(sub)
    for c in classes:
        if c not in found:
            raise DiffaugError(f"class '{c}' has no folder {root / c}; create it or remove the class from `classes`.")
        if len(found[c]) > 1:
            names = " and ".join(repr(p.name) for p in found[c])
            raise DiffaugError(
                f"class '{c}' has {len(found[c])} folders in {root} ({names}, the same name in composed and "
                "decomposed Unicode); merge them into one."
            )
    return {c: found[c][0] for c in classes}


def _csv_text(path: Path) -> io.StringIO:
    """The file's lines as spreadsheets save CSV: UTF-8 with or without a byte-order mark, LF or CRLF."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DiffaugError(
            f"{path} line {line} is not UTF-8 (byte 0x{data[e.start]:02x}, perhaps Latin-1 or Windows-1252); "
            "save it as CSV UTF-8 (or convert it: iconv -f latin1 -t utf-8)."
        ) from None
    return io.StringIO(text, newline="")  # as open(newline="") reads it: csv handles CRLF and quoted newlines


def read_url_list(path: str | Path) -> list[tuple[str, str]]:
    """Rows of `url,label` (a header row is optional)."""
    path = Path(path)
    if not path.is_file():
        raise DiffaugError(f"scrape.path {path} does not exist; give a CSV file of url,label rows.")
    rows = []
    for n, row in enumerate(csv.reader(_csv_text(path)), start=1):
        if not row or not "".join(row).strip() or row[0].startswith("#"):
            continue
        if not rows and [c.strip().lower() for c in row[:2]] == ["url", "label"]:
            continue  # the optional header
        if len(row) < 2 or not row[1].strip():
            raise DiffaugError(f"{path} line {n} has no label; each row must be url,label.")
        rows.append((row[0].strip(), row[1].strip()))
    return rows


def urls(csv_path: str | Path, classes: tuple[str, ...], params: Scrape) -> Iterator[Candidate]:
    """Download every row (in parallel, resumable through a cache outside the DVC output).

    Rows are yielded as their downloads finish, in list order, so `collect` decodes while later rows
    download and nothing of the finished ones but their manifest line stays in memory. The user wrote
    these URLs, so they may name a host on their own network (`trusted`); where such a host redirects
    is checked like any other redirect.
    """
    rows = read_url_list(csv_path)
    listed = Counter(url for url, label in rows if label in classes)  # others are not fetched
    fetcher = Fetcher(
        cache_dir("downloads"),
        params.timeout,
        params.max_bytes,
        params.retries,
        trusted=True,
        reusable=reusable_image(params),
    )
    results = fetcher.fetch_each(listed, params.workers)
    repeated: dict[str, Fetched] = {}  # results of URLs listed more than once, for their later rows
    for url, label in rows:
        if label not in classes:
            yield Candidate(label, url)  # counted by `collect`
            continue
        f = repeated.get(url) or next(results)  # `listed` keeps first-listing order: the next result is this URL's
        if listed[url] > 1:
            repeated[url] = f
        yield Candidate(label, url, f.path, error=f.error, reason=f.reason)


class _Collection:
    """What `collect` has kept and skipped so far."""

    def __init__(self, classes: tuple[str, ...], out: Path, params: Scrape):
        self.out, self.params = out, params
        self.rows: list[dict] = []
        self.first_source: dict[str, str] = {}
        self.skipped: Counter = Counter()
        self.per_class = Counter({c: 0 for c in classes})
        self.examples: dict[str, str] = {}

    def skip(self, reason: str, cand: Candidate, why: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, f"{cand.source}: {why}")

    def take(self, cand: Candidate) -> None:
        if cand.label not in self.per_class:
            return self.skip("label_not_in_classes", cand, f"label '{cand.label}'")
        if cand.error:
            return self.skip(cand.reason, cand, cand.error)
        try:
            image = cand.image
            if image is None:
                image = decode_image(cand.file, self.params.max_side, self.params.max_pixels)
        except NotAnImage as e:
            return self.skip(e.reason, cand, str(e))
        data = png_bytes(image)
        digest = sha256_bytes(data)
        if digest in self.first_source:
            return self.skip("duplicate", cand, f"the same image as {self.first_source[digest]}")
        self.first_source[digest] = cand.source
        rel = f"{cand.label}/{digest[:16]}.png"  # named by content: nothing of a URL or path becomes a name
        (self.out / cand.label).mkdir(parents=True, exist_ok=True)
        (self.out / rel).write_bytes(data)
        self.per_class[cand.label] += 1
        self.rows.append(
            {
                "class": cand.label,
                "file": rel,
                "source": cand.source,
                "sha256": digest,
                "width": image.width,
                "height": image.height,
                "page_url": cand.page_url,
                "licence": cand.licence,
            }
        )


def collect(
    candidates: Iterable[Candidate], classes: tuple[str, ...], out: Path, params: Scrape
) -> tuple[list[dict], dict]:
    """Validate, normalise to RGB PNG, dedupe by content hash, write; return manifest and report.

    Every skipped candidate is counted under its reason, with the first one as the reason's example.
    """
    kept = _Collection(classes, out, params)
    for cand in candidates:
        kept.take(cand)
    empty = [c for c in classes if kept.per_class[c] == 0]
    if empty:
        why = "; ".join(f"{k}: {v}" for k, v in sorted(kept.examples.items()) if k != "label_not_in_classes")
        raise DiffaugError(
            f"class '{empty[0]}' has no usable images from scrape.source={params.source} ({why or 'no candidates'}); "
            "add images for it or remove it from `classes`."
        )
    rows = sorted(kept.rows, key=lambda r: (classes.index(r["class"]), r["file"]))
    return rows, {
        "images": len(rows),
        "per_class": dict(kept.per_class),
        "skipped": dict(kept.skipped),
        "skipped_examples": kept.examples,
    }


def scrape(params: Scrape, classes: tuple[str, ...], out: Path) -> dict:
    """Fill `out` (an empty folder) with `d_raw`; return the report."""
    if params.source == "digits":
        candidates = digits(classes, params.digits_size)
    elif params.source == "folder":
        candidates = folder(params.path, classes)
    elif params.source == "search":
        candidates = search(classes, params)
    else:
        candidates = urls(params.path, classes, params)
    rows, report = collect(candidates, classes, out, params)
    write_csv(out / "manifest.csv", rows, MANIFEST_COLUMNS)
    return report
