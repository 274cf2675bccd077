"""Fetching images over HTTP: timeouts, retries with backoff, size limit, resumable cache."""
from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import requests
import urllib3

from diffaug.io import atomic_write_bytes, sha256_bytes

USER_AGENT = "diffaug/0.1 (research dataset builder)"
# Worth another try: the server or the network may recover. Other 4xx answers are final.
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Fetched:
    url: str
    data: Optional[bytes]
    error: Optional[str] = None  # why it failed, in a few words
    cached: bool = False


class _Permanent(Exception):
    pass


class Pacer:
    """Politeness: request starts to one host are at least `delay` seconds apart, whatever the
    number of download threads (other hosts are not held up)."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.lock = threading.Lock()
        self.next: dict[str, float] = {}

    def wait(self, url: str) -> None:
        if self.delay <= 0:
            return
        host = urlparse(url).netloc
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next.get(host, now))
            self.next[host] = start + self.delay
        time.sleep(start - now)


def _get(url: str, timeout: float, max_bytes: int) -> bytes:
    """One attempt. The timeout bounds connecting and the whole body, not just each read."""
    deadline = time.monotonic() + timeout
    with requests.get(url, stream=True, timeout=(timeout, timeout), headers={"User-Agent": USER_AGENT},
                      allow_redirects=True) as r:
        if r.status_code != 200:
            message = f"HTTP {r.status_code}"
            raise (IOError(message) if r.status_code in RETRY_STATUS else _Permanent(message))
        length = r.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > max_bytes:
            raise _Permanent(f"too large ({int(length)} bytes > {max_bytes})")
        chunks, size = [], 0
        while True:
            # read1 returns whatever has arrived, so a server trickling bytes meets the deadline.
            chunk = r.raw.read1(1 << 16, decode_content=True) if hasattr(r.raw, "read1") else r.raw.read(1 << 16)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > max_bytes:
                raise _Permanent(f"too large (more than {max_bytes} bytes)")
            if time.monotonic() > deadline:
                raise IOError(f"timed out after {timeout:g} s")
            chunks.append(chunk)


def cached_path(url: str, cache: Path) -> Path:
    return cache / (sha256_bytes(url.encode()) + ".bin")


def fetch(url: str, cache: Path, timeout: float, max_bytes: int, retries: int,
          pacer: Optional[Pacer] = None) -> Fetched:
    """Download `url` once; a completed download is kept in `cache` and never fetched again."""
    if urlparse(url).scheme not in ("http", "https"):
        return Fetched(url, None, "not an http(s) URL")
    cached = cached_path(url, cache)
    if cached.exists():
        return Fetched(url, cached.read_bytes(), cached=True)
    error = "no attempt"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(8.0, 0.5 * 2 ** (attempt - 1)) * (1 + random.random() / 2))
        if pacer:
            pacer.wait(url)
        try:
            data = _get(url, timeout, max_bytes)
        except _Permanent as e:
            return Fetched(url, None, str(e))
        except (requests.Timeout, urllib3.exceptions.TimeoutError):
            error = f"timed out after {timeout:g} s"
        except (requests.RequestException, urllib3.exceptions.HTTPError) as e:
            error = f"connection failed ({type(e).__name__})"
        except IOError as e:  # a retryable status or the whole-body deadline
            error = str(e)
        else:
            atomic_write_bytes(cached, data)
            return Fetched(url, data)
    return Fetched(url, None, error)


def fetch_all(urls: list[str], cache: Path, timeout: float, max_bytes: int, retries: int,
              workers: int, pacer: Optional[Pacer] = None) -> list[Fetched]:
    """Parallel downloads; results come back in the order of `urls`."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda u: fetch(u, cache, timeout, max_bytes, retries, pacer), urls))
