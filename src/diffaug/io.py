"""Small file helpers shared by the stages: atomic outputs, manifests, JSON, image listing.

Outputs are built in a hidden sibling folder and renamed into place only when complete, so a
failed or interrupted stage never leaves a half-written output for DVC or the next stage to read.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from diffaug.errors import DiffaugError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


TMP = ".diffaug-tmp"  # in the workspace, outside every folder DVC hashes (see .dvcignore and .gitignore)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers(folder: Path, pattern: str = ".*.tmp-*") -> None:
    """Remove what killed runs left behind: temporary paths (`pattern` below `folder`) whose process is gone."""
    for leftover in folder.glob(pattern):
        pid = leftover.name.rpartition(".tmp-")[2].split("-")[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)


@functools.cache
def _workspace_temp(cwd: Path) -> Path:
    folder = cwd / TMP
    folder.mkdir(exist_ok=True)
    clean_leftovers(folder)  # once per process
    return folder


def temp_path(final: str | Path) -> Path:
    """Where `final` is built before it is renamed into place: the workspace's .diffaug-tmp/ when `final`
    is inside the current directory (so a killed run leaves nothing inside a DVC dependency such as
    data/synthetic), else beside `final` (the download and image caches). Same filesystem either way."""
    final = Path(final).absolute()
    try:
        final.relative_to(Path.cwd())
        folder = _workspace_temp(Path.cwd())
    except ValueError:
        folder = final.parent
        folder.mkdir(parents=True, exist_ok=True)
    return folder / f".{final.name}.tmp-{os.getpid()}-{threading.get_ident()}"


@contextlib.contextmanager
def atomic_dirs(*finals: str | Path) -> Iterator[list[Path]]:
    """Yield empty temporary folders that replace `finals` only if the block succeeds, one right after
    the other (split's d_original and test set change together or not at all)."""
    finals_ = [Path(f) for f in finals]
    temps = []
    try:
        for final in finals_:
            tmp = temp_path(final)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            temps.append(tmp)
        yield temps
    except BaseException:
        for tmp in temps:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    for final, tmp in zip(finals_, temps):
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        elif final.exists() or final.is_symlink():
            final.unlink()
        tmp.rename(final)


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces `final` only if the block succeeds."""
    with atomic_dirs(final) as (tmp,):
        yield tmp


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves an empty or partial file
        raise


def write_json(path: str | Path, obj) -> None:
    """Stable JSON (sorted keys, fixed indent) so identical results give identical bytes."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def write_csv(path: str | Path, rows: Iterable[dict], columns: list[str]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({c: row[c] for c in columns})
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_csv(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_tree(folder: str | Path) -> str:
    """One hash of every file below `folder` (relative names and contents): a weights fingerprint."""
    folder, h = Path(folder), hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h.update(f.relative_to(folder).as_posix().encode())
            h.update(bytes.fromhex(sha256_file(f)))
    return h.hexdigest()


def list_images(folder: str | Path) -> list[Path]:
    """Image files below `folder`, sorted, hidden files skipped."""
    folder = Path(folder)
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def shown(path: str | Path) -> str:
    """A path as a message can print it: bytes that are not UTF-8 as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def require_utf8_names(folder: str | Path) -> None:
    """Refuse a folder holding a name that is not UTF-8 (old Linux disks, zip archives): Python holds its bytes
    as surrogate escapes, which neither a manifest nor DVC's hashing (a crash naming no file) can write."""
    for top, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(dirs + files):
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                raise DiffaugError(
                    f"{shown(Path(top, name))} has a name that is not UTF-8; rename it "
                    f"(e.g. convmv -f latin1 -t utf-8 -r --notest {shown(folder)})."
                ) from None


def cache_dir(*parts: str) -> Path:
    """A folder outside the DVC outputs for work worth keeping across runs (downloads, images).

    It lives in the user's cache, not the workspace, so queued experiments (`dvc exp run --queue`
    runs in a temporary copy of the repo) share it. Entries are keyed by content, so sharing is safe.
    """
    root = os.environ.get("DIFFAUG_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "diffaug"
    )
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
