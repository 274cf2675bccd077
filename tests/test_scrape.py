"""scrape: the three sources (digits, folder, urls) and the `scrape` stage entry point.

What a user sees: `<out>/<class>/<sha256[:16]>.png` RGB files, a manifest that matches them, a
report whose counts explain every skipped input, downloads that give up within the timeout and
are not repeated on the next run, and one-sentence errors that name the offending class or line.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import unicodedata
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import diffaug
from diffaug.data import download
from diffaug.data.download import Address
from diffaug.data.images import TooManyPixels, decode_image, png_bytes
from diffaug.data.scrape import MANIFEST_COLUMNS, scrape
from diffaug.errors import DiffaugError
from diffaug.io import read_csv
from diffaug.params import DIGIT_WORDS
from helpers import params_file, pattern, section

SRC = Path(diffaug.__file__).resolve().parents[1]  # the code under test, also for subprocesses


# --------------------------------------------------------------------------------------------
# helpers


def encode(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Incompressible RGB noise (so truncating or size-limiting its PNG really cuts pixel data)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature + IHDR claiming a huge size + IEND: a tiny 'decompression bomb'."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` (hidden ones included) as relative path -> bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def check_output(out: Path, report: dict, classes: tuple[str, ...]) -> list[dict]:
    """The invariants of every successful scrape; returns the manifest rows."""
    manifest = out / "manifest.csv"
    assert manifest.is_file()
    assert manifest.read_text().splitlines()[0] == ",".join(MANIFEST_COLUMNS)
    rows = read_csv(manifest)

    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"manifest.csv"}
    assert on_disk == {r["file"] for r in rows}, "manifest and files on disk disagree"
    assert len(rows) == len(on_disk) == report["images"]
    # only folders for requested classes, never anything else
    assert {p.name for p in out.iterdir() if p.is_dir()} <= set(classes)

    for r in rows:
        path = out / r["file"]
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        assert r["sha256"] == digest
        assert path.name == digest[:16] + ".png"
        assert path.parent.name == r["class"] and r["class"] in classes
        with Image.open(path) as im:
            assert im.format == "PNG"
            assert im.mode == "RGB"
            assert (im.width, im.height) == (int(r["width"]), int(r["height"]))
    assert len({r["sha256"] for r in rows}) == len(rows), "duplicate content written twice"

    counts = Counter(r["class"] for r in rows)
    assert report["per_class"] == {c: counts.get(c, 0) for c in classes}
    # rows come in class order, then by file name
    assert [(classes.index(r["class"]), r["file"]) for r in rows] == sorted(
        (classes.index(r["class"]), r["file"]) for r in rows
    )
    return rows


def without_examples(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "skipped_examples"}


def by_source(rows: list[dict]) -> dict[str, dict]:
    return {r["source"]: r for r in rows}


def pixels(out: Path, row: dict) -> np.ndarray:
    with Image.open(out / row["file"]) as im:
        return np.asarray(im.convert("RGB"))


# --------------------------------------------------------------------------------------------
# digits


def test_digits_subset_writes_only_those_classes_reproducibly(tmp_path):
    from sklearn.datasets import load_digits

    classes = ("three", "seven")
    out1, out2 = tmp_path / "a", tmp_path / "b"
    out1.mkdir()
    out2.mkdir()
    report = scrape(section("scrape", source="digits"), classes, out1)
    rows = check_output(out1, report, classes)

    assert {p.name for p in out1.iterdir()} == {"three", "seven", "manifest.csv"}
    for r in rows:
        assert (int(r["width"]), int(r["height"])) == (32, 32)
        assert r["source"].startswith("sklearn:load_digits/")
    # every scan of those digits is accounted for: written or counted as a duplicate
    target = load_digits().target
    wanted = int((target == 3).sum() + (target == 7).sum())
    assert report["images"] + report["skipped"].get("duplicate", 0) == wanted
    assert set(report["skipped"]) <= {"duplicate"}
    assert report["per_class"]["three"] > 150 and report["per_class"]["seven"] > 150
    # provenance points at a scan of the right digit
    for r in rows[:: max(1, len(rows) // 20)]:
        index = int(r["source"].rsplit("/", 1)[1])
        assert DIGIT_WORDS[int(target[index])] == r["class"]
    # dark ink on a white page
    assert all(pixels(out1, r).mean() > 127 for r in rows[:20])

    report2 = scrape(section("scrape", source="digits"), classes, out2)
    assert report2 == report
    assert tree(out1) == tree(out2)  # byte-identical files and manifest


def test_digits_size_sets_the_image_side(tmp_path):
    report = scrape(section("scrape", source="digits", digits_size=16), ("zero",), tmp_path)
    rows = check_output(tmp_path, report, ("zero",))
    assert rows and all((int(r["width"]), int(r["height"])) == (16, 16) for r in rows)


# --------------------------------------------------------------------------------------------
# folder


def build_folder(root: Path) -> dict[str, Path]:
    """cat/ holds every kind of good and bad file; dog/ two good ones; fox/ is not requested."""
    cat, dog, fox = root / "cat", root / "dog", root / "fox"
    for d in (cat, dog, fox, cat / "nested" / "deeper"):
        d.mkdir(parents=True)
    p = {}

    # RGBA 40x30: left half fully transparent green, right half opaque red
    rgba = np.zeros((30, 40, 4), dtype=np.uint8)
    rgba[:, :20] = (0, 255, 0, 0)
    rgba[:, 20:] = (255, 0, 0, 255)
    p["rgba"] = cat / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(p["rgba"])

    # palette 24x24: index 0 (black) is transparent, index 1 is blue
    pal = Image.new("P", (24, 24), 0)
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    pal.paste(1, (12, 0, 24, 24))
    p["palette"] = cat / "palette.png"
    pal.save(p["palette"], transparency=0)

    # grayscale JPEG
    gray = Image.fromarray(np.tile(np.linspace(0, 255, 48, dtype=np.uint8), (36, 1)), mode="L")
    p["gray"] = cat / "gray.JPG"
    gray.save(p["gray"], format="JPEG", quality=95)

    # large 400x200: must shrink to max_side, keeping 2:1
    p["large"] = cat / "large.png"
    pattern(7, 400).crop((0, 0, 400, 200)).save(p["large"])

    # files at any depth below the class folder count
    p["deep"] = cat / "nested" / "deeper" / "deep.jpeg"
    pattern(8).save(p["deep"], format="JPEG", quality=95)

    # exact duplicate of a good file
    p["dup"] = cat / "rgba_copy.png"  # sorts after rgba.png, so rgba.png is the one kept
    p["dup"].write_bytes(p["rgba"].read_bytes())

    # not images
    p["corrupt"] = cat / "corrupt.jpg"
    p["corrupt"].write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    whole = encode(noise((64, 64), seed=2))
    p["truncated"] = cat / "truncated.png"
    p["truncated"].write_bytes(whole[: len(whole) // 2])
    p["text"] = cat / "notes.txt"
    p["text"].write_text("not an image\n")
    p["bomb"] = cat / "bomb.png"
    p["bomb"].write_bytes(png_header_only(20_000, 20_000))

    # hidden files (editor backups, .DS_Store) are skipped and counted, so a user sees where they went
    p["hidden"] = cat / ".hidden.png"
    pattern(9).save(p["hidden"])

    p["dog1"] = dog / "one.png"
    pattern(10).save(p["dog1"])
    p["dog2"] = dog / "two.jpg"
    pattern(11).convert("CMYK").save(p["dog2"], format="JPEG", quality=95)

    p["fox"] = fox / "fox.png"
    pattern(12).save(p["fox"])
    return p


def test_folder_normalises_filters_and_dedupes(tmp_path):
    root, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    p = build_folder(root)
    classes = ("cat", "dog")
    report = scrape(section("scrape", source="folder", path=str(root), max_side=100), classes, out)
    rows = check_output(out, report, classes)
    src = by_source(rows)

    assert set(src) == {str(p[k]) for k in ("rgba", "palette", "gray", "large", "deep", "dog1", "dog2")}
    assert report["per_class"] == {"cat": 5, "dog": 2}
    assert report["images"] == 7
    assert report["skipped"] == {"not_an_image": 3, "too_many_pixels": 1, "duplicate": 1, "hidden_file": 1}
    assert set(report["skipped_examples"]) == set(report["skipped"])  # an example of each reason
    assert str(p["bomb"]) in report["skipped_examples"]["too_many_pixels"]
    assert str(p["rgba"]) in report["skipped_examples"]["duplicate"]  # names the copy it repeats
    assert not (out / "fox").exists()

    # transparency becomes white, opaque pixels keep their colour
    rgba = pixels(out, src[str(p["rgba"])])
    assert rgba.shape == (30, 40, 3)  # smaller than max_side: not resized
    assert (rgba[:, :20] == 255).all()
    assert (rgba[:, 20:] == (255, 0, 0)).all()
    pal = pixels(out, src[str(p["palette"])])
    assert (pal[:, :12] == 255).all()
    assert (pal[:, 12:] == (0, 0, 255)).all()

    # grayscale becomes three equal channels
    gray = pixels(out, src[str(p["gray"])])
    assert gray.shape == (36, 48, 3)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert gray[:, 0].mean() < 30 and gray[:, -1].mean() > 225

    # large image shrunk to max_side, aspect kept
    large = src[str(p["large"])]
    assert (int(large["width"]), int(large["height"])) == (100, 50)

    # the duplicate's first copy wins
    assert str(p["dup"]) not in src


def test_folder_without_max_side_keeps_size(tmp_path):
    root, out = tmp_path / "src", tmp_path / "out"
    (root / "cat").mkdir(parents=True)
    out.mkdir()
    pattern(1, 400).crop((0, 0, 400, 200)).save(root / "cat" / "big.png")
    report = scrape(section("scrape", source="folder", path=str(root)), ("cat",), out)
    (row,) = check_output(out, report, ("cat",))
    assert (int(row["width"]), int(row["height"])) == (400, 200)
    # same pixels as the source
    assert (pixels(out, row) == np.asarray(Image.open(root / "cat" / "big.png").convert("RGB"))).all()


def test_folder_missing_class_folder_names_the_class(tmp_path):
    root, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    build_folder(root)
    with pytest.raises(DiffaugError) as e:
        scrape(section("scrape", source="folder", path=str(root)), ("cat", "bird", "dog"), out)
    assert "'bird'" in str(e.value)
    assert "'cat'" not in str(e.value) and "'dog'" not in str(e.value)
    assert list(out.iterdir()) == []  # checked before anything is written


@pytest.mark.parametrize("contents", ["corrupt", "empty"])
def test_folder_class_without_usable_images_names_the_class(tmp_path, contents):
    root, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    build_folder(root)
    fish = root / "fish"
    fish.mkdir()
    if contents == "corrupt":
        (fish / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(300))
        (fish / "readme.txt").write_text("hello")
    with pytest.raises(DiffaugError) as e:
        scrape(section("scrape", source="folder", path=str(root)), ("cat", "fish", "dog"), out)
    msg = str(e.value)
    assert "'fish'" in msg
    assert "'cat'" not in msg and "'dog'" not in msg
    if contents == "corrupt":
        assert "not_an_image" in msg  # says why


def test_folder_class_folder_in_decomposed_unicode_is_found(tmp_path):
    # macOS writes "käse" as "ka\u0308se" (NFD); the class name in params.yaml is composed (NFC)
    root, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    nfd = unicodedata.normalize("NFD", "käse")
    (root / nfd).mkdir(parents=True)
    (root / "dog").mkdir()
    pattern(1).save(root / nfd / "a.png")
    pattern(2).save(root / "dog" / "b.png")
    report = scrape(section("scrape", source="folder", path=str(root)), ("käse", "dog"), out)
    check_output(out, report, ("käse", "dog"))
    assert report["per_class"] == {"käse": 1, "dog": 1}
    assert (out / "käse").is_dir()  # the output folder carries the class name as written in params.yaml


def test_folder_two_folders_for_one_class_up_to_normalisation_are_refused(tmp_path):
    root, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    for name in ("käse", unicodedata.normalize("NFD", "käse")):
        (root / name).mkdir(parents=True)
        pattern(1).save(root / name / "a.png")
    (root / "dog").mkdir()
    with pytest.raises(DiffaugError, match="'käse' has 2 folders") as e:
        scrape(section("scrape", source="folder", path=str(root)), ("käse", "dog"), out)
    assert "merge" in str(e.value)


def test_folder_counts_symlinked_folders_loops_and_broken_links(tmp_path):
    # DVC hashes linked files but not linked folders (checked on 3.67), so a linked folder is reported, not read
    root, out, elsewhere = tmp_path / "src", tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    elsewhere.mkdir()
    pattern(1).save(root / "cat" / "a.png")
    pattern(2).save(elsewhere / "b.png")
    pattern(3).save(root / "dog" / "c.png")
    (root / "cat" / "more").symlink_to(elsewhere, target_is_directory=True)  # a sub-folder kept on another disk
    (root / "dog" / "up").symlink_to(root / "dog", target_is_directory=True)  # a loop
    (root / "cat" / "gone.png").symlink_to(tmp_path / "deleted.png")
    (root / "cat" / "linked.png").symlink_to(elsewhere / "b.png")  # a linked file is read, as DVC hashes it
    report = scrape(section("scrape", source="folder", path=str(root)), ("cat", "dog"), out)
    rows = check_output(out, report, ("cat", "dog"))
    assert str(root / "cat" / "linked.png") in by_source(rows)
    assert report["per_class"] == {"cat": 2, "dog": 1}
    assert report["skipped"] == {"symlinked_folder": 2, "broken_link": 1}
    example = report["skipped_examples"]["symlinked_folder"]
    assert example.startswith(str(root / "cat" / "more")) and "DVC" in example and "copy" in example
    assert str(root / "cat" / "gone.png") in report["skipped_examples"]["broken_link"]


def non_utf8_folder(root: Path) -> Path:
    """cat/ and dog/ with one good image each, and cat/caf\\xe9.png: a Latin-1 name, as old disks and zips hold."""
    for i, c in enumerate(("cat", "dog")):
        (root / c).mkdir(parents=True)
        pattern(i).save(root / c / "ok.png")
    bad = Path(os.fsdecode(bytes(root / "cat") + b"/caf\xe9.png"))  # Python holds the byte as a surrogate escape
    pattern(5).save(bad, format="PNG")
    return bad


def test_folder_file_name_not_in_utf8_is_refused_by_name(tmp_path):
    root, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    non_utf8_folder(root)
    with pytest.raises(DiffaugError) as e:
        scrape(section("scrape", source="folder", path=str(root)), ("cat", "dog"), out)
    msg = str(e.value)
    assert f"{root}/cat/caf\\xe9.png" in msg and "not UTF-8" in msg and "convmv" in msg
    msg.encode("utf-8")  # printable: no surrogates left in the sentence
    assert list(out.iterdir()) == []


def test_check_stage_refuses_a_file_name_dvc_cannot_hash(tmp_path):
    # DVC 3.67 crashes hashing such a folder ("surrogates not allowed", naming no file); `check` runs before it
    root, work = tmp_path / "src", tmp_path / "work"
    work.mkdir()
    non_utf8_folder(root)
    params_file(work, classes=["cat", "dog"], scrape={"source": "folder", "path": str(root)})
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run(
        [sys.executable, "-m", "diffaug.stages.check"], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and "cat/caf\\xe9.png" in line and "convmv" in line
    assert not (work / "params.checked").exists()


def test_folder_path_that_is_not_a_folder(tmp_path):
    from diffaug.params import ParamsError, load_params

    # checked when params load (the check stage), before DVC deletes any output
    with pytest.raises(ParamsError, match="scrape.path") as e:
        load_params(params_file(tmp_path, scrape={"source": "folder", "path": str(tmp_path / "nope")}))
    assert "nope" in str(e.value) and "does not exist" in str(e.value)


def test_folder_16bit_grayscale_keeps_its_tones(tmp_path):
    root, out = tmp_path / "src", tmp_path / "out"
    (root / "cat").mkdir(parents=True)
    out.mkdir()
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1))
    Image.fromarray(ramp).save(root / "cat" / "ramp16.png")  # saved as a 16-bit grayscale PNG
    report = scrape(section("scrape", source="folder", path=str(root)), ("cat",), out)
    (row,) = check_output(out, report, ("cat",))
    tones = pixels(out, row)[0, :, 0].astype(int)
    assert tones[0] < 10 and tones[-1] > 245
    assert 100 < tones.mean() < 155  # a ramp from black to white, not mostly white


def test_folder_report_is_identical_across_runs(tmp_path):
    root = tmp_path / "src"
    (root / "cat").mkdir(parents=True)
    pattern(1).save(root / "cat" / "a.png")
    (root / "cat" / "notes.txt").write_text("not an image\n")
    reports = []
    for name in ("out1", "out2"):
        (tmp_path / name).mkdir()
        reports.append(scrape(section("scrape", source="folder", path=str(root)), ("cat",), tmp_path / name))
    assert tree(tmp_path / "out1") == tree(tmp_path / "out2")
    assert reports[0]["skipped"] == {"not_an_image": 1}
    # the stage saves this report as JSON (stable keys): it must not change from run to run
    assert reports[0] == reports[1]
    example = reports[0]["skipped_examples"]["not_an_image"]
    assert "notes.txt" in example
    assert not re.search(r"0x[0-9a-fA-F]{4,}", example), example  # a memory address differs per process


# --------------------------------------------------------------------------------------------
# urls: a local HTTP server


class Server:
    """A 127.0.0.1 server whose routes tests set; counts requests per path."""

    def __init__(self):
        self.routes: dict = {}
        self.hits: Counter = Counter()
        self.log: list[tuple[str, str, float]] = []  # (Host header, path, time) of every request
        self.lock = threading.Lock()
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                with server.lock:
                    server.log.append((self.headers.get("Host", ""), self.path, time.monotonic()))
                    server.hits[self.path] += 1
                    n = server.hits[self.path]
                route = server.routes.get(self.path)
                try:
                    if route is None:
                        self.send_error(404)
                    else:
                        route(self, n)
                except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                    pass  # the client gave up, as it should

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def ok(data: bytes, ctype: str = "image/png", length: bool = True, chunk: int = 16384):
    def route(h, n):
        h.send_response(200)
        h.send_header("Content-Type", ctype)
        if length:
            h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        for i in range(0, len(data), chunk):
            h.wfile.write(data[i : i + chunk])

    return route


def status(code: int):
    def route(h, n):
        h.send_response(code)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return route


def redirect(location: str, code: int = 302):
    def route(h, n):
        h.send_response(code)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return route


def fails_first(k: int, code: int, then):
    def route(h, n):
        (status(code) if n <= k else then)(h, n)

    return route


def delay_headers(stop: threading.Event, seconds: float = 20.0):
    def route(h, n):
        if stop.wait(seconds):
            return
        ok(b"late")(h, n)

    return route


def png_headers(h, data: bytes) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "image/png")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()


def delay_body(stop: threading.Event, data: bytes, seconds: float = 20.0):
    def route(h, n):
        png_headers(h, data)
        h.wfile.write(data[:10])
        h.wfile.flush()
        if stop.wait(seconds):
            return
        h.wfile.write(data[10:])

    return route


def dribble(h, data: bytes, stop: threading.Event, every: float) -> None:
    """`data` one byte at a time, `every` seconds apart (until the test ends)."""
    for i in range(len(data)):
        h.wfile.write(data[i : i + 1])
        h.wfile.flush()
        if stop.wait(every):
            return


def trickle(stop: threading.Event, data: bytes, every: float = 0.2):
    """Headers at once, then one byte at a time: each read is quick, the whole body never ends."""

    def route(h, n):
        png_headers(h, data)
        dribble(h, data, stop, every)

    return route


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DIFFAUG_CACHE", str(cache))
    return cache


def write_list(path: Path, rows: list[tuple[str, ...]], header: bool = True) -> Path:
    lines = (["url,label"] if header else []) + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


PNG_A = encode(pattern(1))
PNG_C = encode(pattern(3))
JPEG_B = encode(pattern(2), "JPEG", quality=90)
HUGE = encode(noise((300, 300), seed=5))  # a real image, ~270 kB
MAX_BYTES = 200_000
HTML = b"<!doctype html><html><head><title>Not found</title></head><body>nope</body></html>\n"


def test_urls_counts_every_outcome(tmp_path, server):
    assert len(HUGE) > MAX_BYTES and max(len(PNG_A), len(PNG_C), len(JPEG_B)) < MAX_BYTES
    server.routes.update(
        {
            "/a.png": ok(PNG_A),
            "/a-copy.png": ok(PNG_A),
            "/b.jpg": ok(JPEG_B, "image/jpeg"),
            "/page.png": ok(HTML, "image/png"),  # lies about its type
            "/flaky.png": fails_first(1, 503, ok(PNG_C)),
            "/slow-head.png": delay_headers(server.stop),
            "/slow-body.png": delay_body(server.stop, PNG_C),
            "/huge-len.png": ok(HUGE),
            "/huge-stream.png": ok(HUGE, length=False),
            "/bird.png": ok(encode(pattern(4))),
        }
    )  # /missing.png is not a route: 404
    u = server.url
    csv_path = write_list(
        tmp_path / "urls.csv",
        [
            (u("/a.png"), "cat"),
            (u("/b.jpg"), "dog"),
            (u("/a-copy.png"), "cat"),
            (u("/a.png"), "cat"),  # the same URL twice
            (u("/page.png"), "cat"),
            (u("/missing.png"), "dog"),
            (u("/flaky.png"), "dog"),
            (u("/slow-head.png"), "cat"),
            (u("/slow-body.png"), "cat"),
            (u("/huge-len.png"), "dog"),
            (u("/huge-stream.png"), "dog"),
            (u("/bird.png"), "bird"),
            ("file:///etc/passwd", "cat"),
        ],
    )
    out = tmp_path / "out"
    out.mkdir()
    params = section(
        "scrape", source="urls", path=str(csv_path), timeout=1.0, retries=1, workers=8, max_bytes=MAX_BYTES
    )
    start = time.monotonic()
    report = scrape(params, ("cat", "dog"), out)
    elapsed = time.monotonic() - start

    rows = check_output(out, report, ("cat", "dog"))
    src = by_source(rows)
    assert set(src) == {u("/a.png"), u("/b.jpg"), u("/flaky.png")}
    assert src[u("/a.png")]["class"] == "cat"
    assert src[u("/b.jpg")]["class"] == "dog" and src[u("/flaky.png")]["class"] == "dog"
    assert (pixels(out, src[u("/a.png")]) == np.asarray(pattern(1))).all()
    assert (pixels(out, src[u("/flaky.png")]) == np.asarray(pattern(3))).all()
    assert report["per_class"] == {"cat": 1, "dog": 2}
    assert report["skipped"] == {
        "duplicate": 2,
        "not_an_image": 1,
        "http_404": 1,
        "timeout": 2,
        "too_large": 2,
        "unsupported_scheme": 1,
        "label_not_in_classes": 1,
    }
    examples = report["skipped_examples"]
    assert set(examples) == set(report["skipped"])  # an example of each, naming the row and the cause
    assert examples["http_404"].startswith(u("/missing.png")) and "HTTP 404" in examples["http_404"]
    assert u("/page.png") in examples["not_an_image"]
    assert "timed out after 1 s" in examples["timeout"]
    assert "scrape.max_bytes" in examples["too_large"]
    assert examples["unsupported_scheme"].startswith("file:///etc/passwd")

    # slow servers cost about the timeout per attempt (2 attempts + backoff), never their 20 s
    assert elapsed < 6.0, f"scrape took {elapsed:.1f} s"
    hits = dict(server.hits)
    assert hits["/a.png"] == 1  # listed twice, fetched once
    assert hits["/flaky.png"] == 2  # 503 retried, then succeeded
    assert hits["/missing.png"] == 1  # 404 is final: no retry
    assert hits["/huge-len.png"] == 1 and hits["/huge-stream.png"] == 1  # too large is final
    assert hits["/slow-head.png"] == 2 and hits["/slow-body.png"] == 2  # timeouts are retried
    assert hits["/page.png"] == 1


def fast_routes(server: Server) -> list[tuple[str, str]]:
    server.routes.update(
        {
            "/a.png": ok(PNG_A),
            "/a-copy.png": ok(PNG_A),
            "/b.jpg": ok(JPEG_B, "image/jpeg"),
            "/page.png": ok(HTML, "image/png"),
            "/flaky.png": fails_first(1, 503, ok(PNG_C)),
        }
    )
    u = server.url
    return [
        (u("/a.png"), "cat"),
        (u("/b.jpg"), "dog"),
        (u("/a-copy.png"), "cat"),
        (u("/page.png"), "cat"),
        (u("/flaky.png"), "dog"),
        (u("/missing.png"), "dog"),
    ]


def test_urls_second_run_uses_the_download_cache(tmp_path, server, private_cache):
    csv_path = write_list(tmp_path / "urls.csv", fast_routes(server))
    params = section("scrape", source="urls", path=str(csv_path), timeout=1.0, retries=1)
    out1, out2 = tmp_path / "out1", tmp_path / "out2"
    out1.mkdir()
    out2.mkdir()
    report1 = scrape(params, ("cat", "dog"), out1)
    check_output(out1, report1, ("cat", "dog"))
    assert report1["images"] == 3
    first = dict(server.hits)
    assert first["/flaky.png"] == 2
    assert any(private_cache.rglob("*")), "downloads are kept in DIFFAUG_CACHE"
    assert not any(p.suffix == ".bin" for p in out1.rglob("*")), "cache leaked into the output"

    report2 = scrape(params, ("cat", "dog"), out2)
    for path in ("/a.png", "/a-copy.png", "/b.jpg", "/flaky.png"):
        assert server.hits[path] == first[path], f"{path} downloaded again"
    assert server.hits["/missing.png"] == 2  # failures get another chance
    assert server.hits["/page.png"] == 2  # a cached body that is no image is not trusted: asked again
    assert without_examples(report2) == without_examples(report1)
    assert report2["skipped_examples"].keys() == report1["skipped_examples"].keys()
    assert tree(out1) == tree(out2)


def test_urls_rerun_fetches_only_what_failed(tmp_path, server):
    rows = fast_routes(server)
    server.routes["/flaky.png"] = status(503)  # down for the whole first run
    csv_path = write_list(tmp_path / "urls.csv", rows)
    params = section("scrape", source="urls", path=str(csv_path), timeout=1.0, retries=1)
    out1, out2 = tmp_path / "out1", tmp_path / "out2"
    out1.mkdir()
    out2.mkdir()
    report1 = scrape(params, ("cat", "dog"), out1)
    assert report1["per_class"] == {"cat": 1, "dog": 1}
    assert report1["skipped"]["http_503"] == 1 and report1["skipped"]["http_404"] == 1
    first = dict(server.hits)
    assert first["/flaky.png"] == 2

    server.routes["/flaky.png"] = ok(PNG_C)  # back up
    report2 = scrape(params, ("cat", "dog"), out2)
    rows2 = check_output(out2, report2, ("cat", "dog"))
    assert server.hits["/flaky.png"] == 3  # one more request, and it worked
    for path in ("/a.png", "/a-copy.png", "/b.jpg"):
        assert server.hits[path] == first[path], f"{path} downloaded again"
    assert report2["per_class"] == {"cat": 1, "dog": 2}
    assert server.url("/flaky.png") in by_source(rows2)
    # everything from the first run is still there, byte for byte
    t1, t2 = tree(out1), tree(out2)
    assert {k: v for k, v in t2.items() if k in t1 and k != "manifest.csv"} == {
        k: v for k, v in t1.items() if k != "manifest.csv"
    }


def test_urls_trickling_server_is_cut_off_at_the_timeout(tmp_path, server):
    server.routes.update({"/a.png": ok(PNG_A), "/trickle.png": trickle(server.stop, PNG_C)})
    csv_path = write_list(tmp_path / "urls.csv", [(server.url("/a.png"), "cat"), (server.url("/trickle.png"), "cat")])
    params = section("scrape", source="urls", path=str(csv_path), timeout=1.0, retries=0)
    result = {}

    def run():
        result["report"] = scrape(params, ("cat",), tmp_path / "out")

    (tmp_path / "out").mkdir()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(3.0)  # timeout 1 s, no retries
    assert not worker.is_alive(), "still downloading a trickling response 3 s after a 1 s timeout"
    assert result["report"]["skipped"] == {"timeout": 1}


def test_urls_non_http_schemes_are_refused(tmp_path, server):
    server.routes["/a.png"] = ok(PNG_A)
    local = tmp_path / "local.png"
    local.write_bytes(PNG_C)  # a real image: had it been read, it would show up in the output
    csv_path = write_list(
        tmp_path / "urls.csv",
        [
            ("file:///etc/passwd", "cat"),
            (local.as_uri(), "cat"),
            (server.url("/a.png"), "cat"),
        ],
    )
    out = tmp_path / "out"
    out.mkdir()
    report = scrape(section("scrape", source="urls", path=str(csv_path), timeout=1.0, retries=1), ("cat",), out)
    rows = check_output(out, report, ("cat",))
    assert [r["source"] for r in rows] == [server.url("/a.png")]
    assert report["skipped"] == {"unsupported_scheme": 2}
    assert "file:///etc/passwd" in report["skipped_examples"]["unsupported_scheme"]
    assert "http" in report["skipped_examples"]["unsupported_scheme"]


# --------------------------------------------------------------------------------------------
# hostile hosts: one deadline per attempt, redirects checked hop by hop, private addresses, retries


def header_tarpit(stop: threading.Event, every: float = 0.5):
    """The status line and headers one byte every `every` s: each read is quick, the response never ends."""

    def route(h, n):
        dribble(h, b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 10\r\n\r\n", stop, every)

    return route


def endless_redirect(stop: threading.Event, location: str):
    """A 302 whose body never ends (no Content-Length): a client reading it would never follow it."""

    def route(h, n):
        h.send_response(302)
        h.send_header("Location", location)
        h.end_headers()
        block = b"<html>" + b"x" * 65530
        while not stop.is_set():
            h.wfile.write(block)

    return route


def public_host(monkeypatch, name: str = "public.example") -> list[str]:
    """Make `name` resolve to 127.0.0.1 while the policy sees a public address (the resolver hook).
    Returns the list of its lookups."""
    real, lookups = download.resolve, []

    def resolve(host, port):
        if host != name:
            return real(host, port)
        lookups.append(host)
        return [Address("127.0.0.1", public=True)]

    monkeypatch.setattr(download, "resolve", resolve)
    return lookups


def test_urls_header_tarpit_ends_within_timeout_times_attempts(tmp_path, server):
    server.routes.update({"/a.png": ok(PNG_A), "/tarpit.png": header_tarpit(server.stop)})
    csv_path = write_list(tmp_path / "urls.csv", [(server.url("/tarpit.png"), "cat"), (server.url("/a.png"), "cat")])
    (tmp_path / "out").mkdir()
    start = time.monotonic()
    report = scrape(
        section("scrape", source="urls", path=str(csv_path), timeout=1.0, retries=1), ("cat",), tmp_path / "out"
    )
    elapsed = time.monotonic() - start
    assert report["images"] == 1 and report["skipped"] == {"timeout": 1}
    assert server.hits["/tarpit.png"] == 2  # a timeout is worth another try
    # timeout x (retries + 1) = 2 s, the backoff between the two (at most 0.75 s), and a small margin
    assert elapsed < 2.0 + 0.75 + 0.75, f"scrape took {elapsed:.1f} s"


def test_urls_dns_lookup_that_never_answers_is_abandoned_at_the_deadline(tmp_path, server, monkeypatch):
    release = threading.Event()
    real = download.resolve

    def hanging(host, port):
        if host == "slow-dns.example":
            release.wait(30)
        return real(host, port)

    monkeypatch.setattr(download, "resolve", hanging)
    server.routes["/a.png"] = ok(PNG_A)
    csv_path = write_list(
        tmp_path / "urls.csv", [("http://slow-dns.example/a.png", "cat"), (server.url("/a.png"), "cat")]
    )
    (tmp_path / "out").mkdir()
    start = time.monotonic()
    try:
        report = scrape(
            section("scrape", source="urls", path=str(csv_path), timeout=0.5, retries=0), ("cat",), tmp_path / "out"
        )
    finally:
        release.set()
    assert time.monotonic() - start < 1.5
    assert report["skipped"] == {"timeout": 1}
    assert "looking up slow-dns.example" in report["skipped_examples"]["timeout"]


def test_urls_redirect_body_is_never_read(tmp_path, server):
    server.routes.update({"/a.png": ok(PNG_A), "/moved": endless_redirect(server.stop, server.url("/a.png"))})
    csv_path = write_list(tmp_path / "urls.csv", [(server.url("/moved"), "cat")])
    (tmp_path / "out").mkdir()
    start = time.monotonic()
    report = scrape(
        section("scrape", source="urls", path=str(csv_path), timeout=5.0, retries=0), ("cat",), tmp_path / "out"
    )
    assert time.monotonic() - start < 2.0  # followed at once, not after the 5 s deadline
    rows = check_output(tmp_path / "out", report, ("cat",))
    assert [r["source"] for r in rows] == [server.url("/moved")]
    assert (pixels(tmp_path / "out", rows[0]) == np.asarray(pattern(1))).all()


def test_urls_redirect_from_a_public_host_to_loopback_is_refused(tmp_path, server, monkeypatch):
    port = server.httpd.server_address[1]
    lookups = public_host(monkeypatch)
    public = lambda path: f"http://public.example:{port}{path}"
    server.routes.update(
        {
            "/a.png": ok(PNG_A),
            "/b.jpg": ok(JPEG_B, "image/jpeg"),
            "/c.png": ok(PNG_C),
            "/to-loopback": redirect(server.url("/a.png")),
            "/to-localhost": redirect(f"http://localhost:{port}/a.png"),
            "/to-public": redirect(public("/c.png")),
            "/local-to-local": redirect(server.url("/b.jpg")),  # the user's own host may send them on at home
        }
    )
    csv_path = write_list(
        tmp_path / "urls.csv",
        [
            (public("/to-loopback"), "cat"),
            (public("/to-localhost"), "cat"),
            (public("/to-public"), "cat"),
            (server.url("/local-to-local"), "cat"),
        ],
    )
    out = tmp_path / "out"
    out.mkdir()
    report = scrape(section("scrape", source="urls", path=str(csv_path), timeout=1.0, retries=2), ("cat",), out)
    rows = check_output(out, report, ("cat",))
    assert {r["source"] for r in rows} == {public("/to-public"), server.url("/local-to-local")}
    assert report["skipped"] == {"redirect_refused": 2}
    example = report["skipped_examples"]["redirect_refused"]
    assert example.startswith(public("/to-loopback")) and "127.0.0.1" in example and "loopback" in example
    assert server.hits["/a.png"] == 0  # never asked for
    assert server.hits["/to-loopback"] == server.hits["/to-localhost"] == 1  # a refusal is final
    # one lookup per hop to public.example (3 rows, one of them redirected there again): the address
    # checked is the address connected to, so a second answer (DNS rebinding) is never asked for
    assert len(lookups) == 4


def test_urls_redirects_to_other_schemes_and_loops_are_final(tmp_path, server):
    server.routes.update(
        {
            "/a.png": ok(PNG_A),
            "/to-file": redirect("file:///etc/passwd"),
            "/to-ftp": redirect("ftp://example.org/a.png"),
            "/loop": redirect("/loop"),
        }
    )
    csv_path = write_list(
        tmp_path / "urls.csv", [(server.url(p), "cat") for p in ("/a.png", "/to-file", "/to-ftp", "/loop")]
    )
    (tmp_path / "out").mkdir()
    report = scrape(
        section("scrape", source="urls", path=str(csv_path), timeout=1.0, retries=2), ("cat",), tmp_path / "out"
    )
    assert report["skipped"] == {"unsupported_scheme": 2, "too_many_redirects": 1}
    assert server.hits["/to-file"] == server.hits["/to-ftp"] == 1
    assert server.hits["/loop"] == download.MAX_REDIRECTS + 1  # one attempt, never retried


def test_urls_retry_after_is_honoured_up_to_its_cap(tmp_path, server):
    def busy(seconds: str, then):
        def route(h, n):
            if n > 1 and then:
                return then(h, n)
            h.send_response(503 if then is None else 429)
            h.send_header("Retry-After", seconds)
            h.send_header("Content-Length", "0")
            h.end_headers()

        return route

    server.routes.update({"/busy.png": busy("1", ok(PNG_C)), "/away.png": busy("3600", None), "/a.png": ok(PNG_A)})
    csv_path = write_list(tmp_path / "urls.csv", [(server.url(p), "cat") for p in ("/busy.png", "/away.png", "/a.png")])
    (tmp_path / "out").mkdir()
    start = time.monotonic()
    report = scrape(
        section("scrape", source="urls", path=str(csv_path), timeout=1.0, retries=2), ("cat",), tmp_path / "out"
    )
    assert time.monotonic() - start < 3.0
    assert report["images"] == 2 and report["skipped"] == {"http_503": 1}
    asked = [t for _, path, t in server.log if path == "/busy.png"]
    assert len(asked) == 2 and asked[1] - asked[0] >= 1.0  # the backoff alone would be 0.5-0.75 s
    assert server.hits["/away.png"] == 1  # an hour is past the cap: not waited for, not retried
    assert "3600" in report["skipped_examples"]["http_503"]


def test_urls_tls_failure_is_final(tmp_path, server):
    """A host that does not speak TLS on an https URL: one connection, no retries."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    connections, done = [], threading.Event()

    def serve():
        end = time.monotonic() + 10  # bounded in time and in connections
        while not done.is_set() and time.monotonic() < end and len(connections) < 4:
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            connections.append(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")  # plain text where TLS is expected

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    server.routes["/a.png"] = ok(PNG_A)
    tls_url = f"https://127.0.0.1:{listener.getsockname()[1]}/a.png"
    csv_path = write_list(tmp_path / "urls.csv", [(tls_url, "cat"), (server.url("/a.png"), "cat")])
    (tmp_path / "out").mkdir()
    try:
        report = scrape(
            section("scrape", source="urls", path=str(csv_path), timeout=1.0, retries=3), ("cat",), tmp_path / "out"
        )
    finally:
        done.set()
        thread.join(5)
        listener.close()
        for conn in connections:
            conn.close()
    assert report["skipped"] == {"tls_error": 1}
    assert len(connections) == 1


def test_urls_refused_connection_is_retried_and_named(tmp_path, server):
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    server.routes["/a.png"] = ok(PNG_A)
    csv_path = write_list(
        tmp_path / "urls.csv", [(f"http://127.0.0.1:{port}/a.png", "cat"), (server.url("/a.png"), "cat")]
    )
    (tmp_path / "out").mkdir()
    start = time.monotonic()
    report = scrape(
        section("scrape", source="urls", path=str(csv_path), timeout=1.0, retries=1), ("cat",), tmp_path / "out"
    )
    assert report["skipped"] == {"connection_failed": 1}
    assert "ConnectionRefusedError" in report["skipped_examples"]["connection_failed"]
    assert time.monotonic() - start >= 0.5  # retried after the backoff: the host may come back


@pytest.mark.parametrize(
    "address, public",
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("fe80::1%2", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::", False),
    ],
)
def test_only_globally_routable_addresses_count_as_public(address, public):
    assert download.is_public(address) is public


def test_urls_path_traversal_rows_write_nothing_outside_cache_and_output(tmp_path, server, private_cache):
    server.routes.update({"/../../escape.png": ok(PNG_A), "/%2e%2e/%2e%2e/escape.png": ok(PNG_C)})
    csv_path = write_list(
        tmp_path / "urls.csv",
        [
            (server.url("/../../escape.png"), "cat"),
            (server.url("/%2e%2e/%2e%2e/escape.png"), "cat"),
            ("../../escape.png", "cat"),
            ("/etc/passwd", "cat"),
        ],
    )
    out = tmp_path / "out"
    out.mkdir()
    before = {
        p for p in tmp_path.parent.rglob("*") if not p.is_relative_to(private_cache) and not p.is_relative_to(out)
    }
    report = scrape(section("scrape", source="urls", path=str(csv_path), timeout=1.0, retries=0), ("cat",), out)
    after = {p for p in tmp_path.parent.rglob("*") if not p.is_relative_to(private_cache) and not p.is_relative_to(out)}
    assert after == before  # nothing appeared outside the cache and the output
    assert report["images"] == 2 and report["skipped"] == {"unsupported_scheme": 2}
    check_output(out, report, ("cat",))  # <class>/<sha256[:16]>.png only
    assert all(re.fullmatch(r"[0-9a-f]{64}\.bin", p.name) for p in (private_cache / "downloads").iterdir())


@pytest.mark.parametrize("damage", ["empty", "html", "truncated"])
def test_urls_bad_cached_download_is_fetched_again(tmp_path, server, private_cache, damage):
    server.routes["/a.png"] = ok(PNG_A)
    csv_path = write_list(tmp_path / "urls.csv", [(server.url("/a.png"), "cat")])
    params = section("scrape", source="urls", path=str(csv_path), timeout=1.0, retries=0)
    runs = [tmp_path / f"out{i}" for i in range(3)]
    for o in runs:
        o.mkdir()
    scrape(params, ("cat",), runs[0])
    cached = download.cached_path(server.url("/a.png"), private_cache / "downloads")
    assert cached.read_bytes() == PNG_A
    cached.write_bytes({"empty": b"", "html": HTML, "truncated": PNG_A[: len(PNG_A) // 2]}[damage])

    report = scrape(params, ("cat",), runs[1])
    assert server.hits["/a.png"] == 2  # not reused: fetched again
    assert report["images"] == 1 and cached.read_bytes() == PNG_A
    scrape(params, ("cat",), runs[2])
    assert server.hits["/a.png"] == 2  # a sound cached copy is reused
    assert tree(runs[1]) == tree(runs[0])


def padded_png(i: int, pad: int) -> bytes:
    """A 4x4 PNG, unique for i < 65536, carrying `pad` bytes in a private ancillary chunk decoders skip."""
    png = encode(Image.new("RGB", (4, 4), (i % 256, i // 256, 7)))
    data = bytes(pad)
    chunk = struct.pack(">I", pad) + b"prVt" + data + struct.pack(">I", zlib.crc32(b"prVt" + data))
    return png[:33] + chunk + png[33:]  # after IHDR (8 + 25 bytes)


class ManyImages(dict):
    """Routes: /n/<i>.png serves padded_png(i), made on the fly so the test holds no bodies itself."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def get(self, path, default=None):
        m = re.fullmatch(r"/n/(\d+)\.png", path)
        return ok(padded_png(int(m.group(1)), self.pad)) if m else default


@pytest.mark.parametrize("rows", [1000, pytest.param(5000, marks=pytest.mark.slow)])
def test_urls_memory_stays_flat_in_the_number_of_rows(tmp_path, server, rows):
    """Rows of 20 kB bodies (20 MB, 100 MB in all): the scrape's peak Python memory stays a few MB.

    Bodies go from the socket to the cache one chunk at a time, and `collect` decodes one file at a time,
    so what grows with the rows is their URLs and manifest lines. (5,000 rows take 30-50 s here: slow.)
    """
    import tracemalloc

    pad = 20_000
    server.routes = ManyImages(pad)
    csv_path = write_list(tmp_path / "urls.csv", [(server.url(f"/n/{i}.png"), "cat") for i in range(rows)])
    (tmp_path / "out").mkdir()
    tracemalloc.start()
    try:
        report = scrape(
            section("scrape", source="urls", path=str(csv_path), timeout=5.0, retries=0), ("cat",), tmp_path / "out"
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report["images"] == rows and report["skipped"] == {}
    assert peak < 5_000_000 + 2_000 * rows, f"peak {peak / 1e6:.1f} MB for {rows * pad / 1e6:.0f} MB of bodies"


def flat_png(width: int, height: int) -> bytes:
    """A black RGB PNG written row by row (never the whole image in memory): tiny file, huge image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = bytes(1 + 3 * width)  # filter byte 0, then black pixels
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_urls_small_file_with_too_many_pixels_is_refused_before_decoding(tmp_path, server, monkeypatch):
    from PIL import ImageFile

    big = flat_png(10000, 5000)
    assert len(big) < 200_000  # about 145 kB for 150 MB of pixels
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: decoded.append(im.size) or real_load(im))
    server.routes.update({"/bomb.png": ok(big), "/a.png": ok(PNG_A)})
    csv_path = write_list(tmp_path / "urls.csv", [(server.url("/bomb.png"), "cat"), (server.url("/a.png"), "cat")])
    (tmp_path / "out").mkdir()
    params = section("scrape", source="urls", path=str(csv_path), timeout=2.0, retries=0)
    assert params.max_pixels == 40_000_000  # params.yaml's default
    report = scrape(params, ("cat",), tmp_path / "out")
    assert report["images"] == 1 and report["skipped"] == {"too_many_pixels": 1}
    assert (
        "10000x5000 = 50,000,000 pixels, more than scrape.max_pixels = 40,000,000"
        in report["skipped_examples"]["too_many_pixels"]
    )
    assert (10000, 5000) not in decoded  # refused from the header: the 150 MB were never allocated


def test_max_pixels_is_the_limit(tmp_path):
    image = flat_png(200, 100)
    assert decode_image(image, 0, 20_000).size == (200, 100)
    with pytest.raises(TooManyPixels):
        decode_image(image, 0, 19_999)


@pytest.mark.parametrize("value", [0, 10**9])
def test_max_pixels_param_is_checked(tmp_path, value):
    from diffaug.params import ParamsError, load_params

    with pytest.raises(ParamsError, match=r"scrape\.max_pixels"):
        load_params(params_file(tmp_path, scrape={"max_pixels": value}))


# --------------------------------------------------------------------------------------------
# image decoding: formats and colour profiles


def test_only_the_listed_formats_are_opened(tmp_path, monkeypatch):
    from PIL import EpsImagePlugin

    opened = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: opened.append(self) or 1 / 0)
    root, out = tmp_path / "src", tmp_path / "out"
    (root / "cat").mkdir(parents=True)
    out.mkdir()
    for i, (fmt, kw) in enumerate(
        [("PNG", {}), ("JPEG", {"quality": 95}), ("WEBP", {"lossless": True}), ("BMP", {}), ("TIFF", {})]
    ):
        pattern(20 + i).save(root / "cat" / f"{i}.{fmt.lower()}", format=fmt, **kw)
    red, blue = Image.new("RGB", (16, 16), (255, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 255))
    red.save(root / "cat" / "anim.gif", save_all=True, append_images=[blue], duration=100)
    (root / "cat" / "drawing.eps").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n")
    report = scrape(section("scrape", source="folder", path=str(root)), ("cat",), out)
    rows = check_output(out, report, ("cat",))
    assert report["images"] == 6 and report["skipped"] == {"not_an_image": 1}
    assert "drawing.eps" in report["skipped_examples"]["not_an_image"]
    assert opened == []  # Pillow's EPS plugin (it runs Ghostscript) was never reached
    gif = next(r for r in rows if r["source"].endswith("anim.gif"))
    assert (pixels(out, gif) == (255, 0, 0)).all()  # the first frame


def test_same_pixels_with_and_without_an_icc_profile_give_the_same_bytes(tmp_path):
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    root, out = tmp_path / "src", tmp_path / "out"
    (root / "cat").mkdir(parents=True)
    out.mkdir()
    image = pattern(5)
    image.save(root / "cat" / "a_plain.png")
    image.save(root / "cat" / "b_srgb.png", icc_profile=srgb)
    image.save(root / "cat" / "c_broken_profile.png", icc_profile=b"not a colour profile")
    image.save(root / "cat" / "d_plain.jpg", quality=95)
    image.save(root / "cat" / "e_srgb.jpg", quality=95, icc_profile=srgb)
    report = scrape(section("scrape", source="folder", path=str(root)), ("cat",), out)
    rows = check_output(out, report, ("cat",))
    assert report["skipped"] == {"duplicate": 3}  # one PNG and one JPEG kept: their tagged copies are the same
    assert sorted(Path(r["source"]).name for r in rows) == ["a_plain.png", "d_plain.jpg"]
    for r in rows:
        assert b"iCCP" not in (out / r["file"]).read_bytes()  # no profile written into the output
    with Image.open(root / "cat" / "b_srgb.png") as tagged:
        assert tagged.info.get("icc_profile")  # the input did carry one
    assert png_bytes(decode_image(root / "cat" / "b_srgb.png", 0, 10**6)) == png_bytes(image)


def test_urls_list_without_header_and_with_comments(tmp_path, server):
    server.routes.update({"/a.png": ok(PNG_A), "/b.jpg": ok(JPEG_B)})
    csv_path = tmp_path / "urls.csv"
    csv_path.write_text(f"# my images\n\n {server.url('/a.png')} , cat \n{server.url('/b.jpg')},dog\n")
    out = tmp_path / "out"
    out.mkdir()
    report = scrape(section("scrape", source="urls", path=str(csv_path), timeout=1.0), ("cat", "dog"), out)
    check_output(out, report, ("cat", "dog"))
    assert report["per_class"] == {"cat": 1, "dog": 1}
    assert report["skipped"] == {}


def test_urls_list_as_a_spreadsheet_saves_it(tmp_path, server):
    # Excel's "CSV UTF-8": a byte-order mark before the header, CRLF line ends, a capitalised header
    server.routes.update({"/a.png": ok(PNG_A), "/b.jpg": ok(JPEG_B)})
    csv_path = tmp_path / "urls.csv"
    text = f"URL,Label\r\n{server.url('/a.png')},cat\r\n{server.url('/b.jpg')},dog\r\n"
    csv_path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    out = tmp_path / "out"
    out.mkdir()
    report = scrape(section("scrape", source="urls", path=str(csv_path), timeout=1.0), ("cat", "dog"), out)
    check_output(out, report, ("cat", "dog"))
    assert report["per_class"] == {"cat": 1, "dog": 1}
    assert report["skipped"] == {}  # no header row read as data, no BOM glued to the first URL


def test_urls_list_not_in_utf8_names_file_line_and_encoding(tmp_path, server):
    csv_path = tmp_path / "urls.csv"
    csv_path.write_bytes(
        f"url,label\n{server.url('/a.png')},cat\n{server.url('/b.png')},fromage_rapé\n".encode("latin-1")
    )
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DiffaugError) as e:
        scrape(section("scrape", source="urls", path=str(csv_path), timeout=1.0), ("cat",), out)
    msg = str(e.value)
    assert str(csv_path) in msg and "line 3" in msg and "UTF-8" in msg
    assert len(msg.splitlines()) == 1
    assert sum(server.hits.values()) == 0


def test_urls_row_without_label_names_the_line(tmp_path, server):
    server.routes["/a.png"] = ok(PNG_A)
    csv_path = tmp_path / "urls.csv"
    csv_path.write_text(f"url,label\n{server.url('/a.png')},cat\n{server.url('/b.png')}\n")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DiffaugError) as e:
        scrape(section("scrape", source="urls", path=str(csv_path), timeout=1.0), ("cat",), out)
    assert "line 3" in str(e.value)
    assert "label" in str(e.value)
    assert sum(server.hits.values()) == 0, "downloaded before the list was checked"
    assert list(out.iterdir()) == []


def test_urls_missing_list_file(tmp_path):
    from diffaug.params import ParamsError, load_params

    with pytest.raises(ParamsError, match="scrape.path") as e:
        load_params(params_file(tmp_path, scrape={"source": "urls", "path": str(tmp_path / "nope.csv")}))
    assert "nope.csv" in str(e.value) and "does not exist" in str(e.value)


def test_urls_class_with_only_failed_downloads_names_the_class(tmp_path, server):
    server.routes["/a.png"] = ok(PNG_A)
    csv_path = write_list(tmp_path / "urls.csv", [(server.url("/a.png"), "cat"), (server.url("/gone.png"), "dog")])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DiffaugError) as e:
        scrape(section("scrape", source="urls", path=str(csv_path), timeout=1.0, retries=1), ("cat", "dog"), out)
    assert "'dog'" in str(e.value) and "404" in str(e.value)


# --------------------------------------------------------------------------------------------
# the stage: python -m diffaug.stages.scrape


def run_stage(cwd: Path, classes: list[str], path: Path) -> subprocess.CompletedProcess:
    params_file(cwd, classes=classes, scrape={"source": "folder", "path": str(path)})
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["DIFFAUG_CACHE"] = str(cwd / "cache")
    return subprocess.run(
        [sys.executable, "-m", "diffaug.stages.scrape"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def check_failed_run(work: Path, code, stderr: str, cls: str) -> None:
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error:") and f"'{cls}'" in lines[0]
    assert "Traceback" not in stderr
    assert not (work / "data" / "raw").exists()
    if (work / "data").exists():
        assert list((work / "data").iterdir()) == []  # no hidden data/.raw.tmp-* either
    assert not (work / "metrics" / "scrape.json").exists()


def check_good_run(work: Path) -> dict[str, bytes]:
    raw = work / "data" / "raw"
    rows = read_csv(raw / "manifest.csv")
    assert len(rows) == 7
    assert json.loads((raw / "classes.json").read_text()) == ["cat", "dog"]
    assert Counter(r["class"] for r in rows) == {"cat": 5, "dog": 2}
    metrics = json.loads((work / "metrics" / "scrape.json").read_text())
    assert metrics["images"] == 7
    assert metrics["skipped"] == {"duplicate": 1, "not_an_image": 3, "too_many_pixels": 1, "hidden_file": 1}
    assert sorted(p.name for p in (work / "data").iterdir()) == ["raw"]
    return tree(raw)


@pytest.fixture
def stage_dirs(tmp_path):
    """A class-folder dataset and an empty working directory for the stage."""
    root, work = tmp_path / "images", tmp_path / "work"
    build_folder(root)
    work.mkdir()
    return root, work


def test_stage_missing_class_folder_exits_2_and_leaves_nothing(stage_dirs):
    root, work = stage_dirs
    proc = run_stage(work, ["cat", "bird"], root)
    check_failed_run(work, proc.returncode, proc.stderr, "bird")


def test_stage_success_then_failure_keeps_the_previous_output(stage_dirs):
    root, work = stage_dirs
    proc = run_stage(work, ["cat", "dog"], root)
    assert proc.returncode == 0, proc.stderr
    before = check_good_run(work)
    metrics = (work / "metrics" / "scrape.json").read_bytes()

    proc = run_stage(work, ["cat", "bird"], root)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and "'bird'" in proc.stderr
    assert tree(work / "data" / "raw") == before  # a failed run does not touch the last good output
    assert (work / "metrics" / "scrape.json").read_bytes() == metrics
    assert sorted(p.name for p in (work / "data").iterdir()) == ["raw"]  # no leftover temp folder


def test_stage_rerun_gives_identical_output(tmp_path):
    root = tmp_path / "images"
    for c, seed in (("cat", 1), ("dog", 2)):
        (root / c).mkdir(parents=True)
        pattern(seed).save(root / c / "a.png")
    (root / "cat" / "notes.txt").write_text("not an image\n")  # the report names it, with the reason
    outputs = []
    for name in ("work1", "work2"):
        work = tmp_path / name
        work.mkdir()
        proc = run_stage(work, ["cat", "dog"], root)
        assert proc.returncode == 0, proc.stderr
        outputs.append((tree(work / "data" / "raw"), (work / "metrics" / "scrape.json").read_bytes()))
    assert outputs[0][1] == outputs[1][1]
    assert outputs[0][0] == outputs[1][0]  # a DVC output: same inputs, same bytes
