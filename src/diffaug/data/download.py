"""Fetching untrusted URLs: a hard deadline per attempt, redirects checked hop by hop, private addresses
refused where a stranger chose the URL, bodies streamed into the cache, and retries only where they can help.

Why not requests: its timeouts bound each socket read, so a server sending its headers one byte at a time
keeps it waiting forever; it reads the bodies of redirects; and it resolves names itself, so the address
one checks is not necessarily the one it connects to (DNS rebinding). Here each hop is resolved once (in a
thread abandoned at the deadline), checked, and http.client talks over a socket connected to exactly that
address, which a watchdog shuts down when the attempt's time is up, whatever the server is doing.
"""

from __future__ import annotations

import email.utils
import http.client
import ipaddress
import os
import random
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import quote, urljoin, urlsplit

from diffaug.io import sha256_bytes

USER_AGENT = "diffaug/0.1 (research dataset builder)"
SCHEMES = ("http", "https")
CHUNK = 1 << 16  # bytes read (and held) at a time
MAX_REDIRECTS = 5
# Worth another try: the server or the network may recover. Other 4xx answers are final.
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
# A 429/503 Retry-After is honoured up to this many seconds; a server asking for longer is not retried.
MAX_RETRY_AFTER = 30.0
HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "image/*,*/*;q=0.5",
    "Accept-Encoding": "identity",
    "Connection": "close",
}
IN_FLIGHT = 8  # downloads submitted ahead of the one awaited, per worker: enough to keep workers busy


@dataclass(frozen=True)
class Fetched:
    url: str
    path: Optional[Path]  # the body, in the cache; None when it could not be had
    reason: str = ""  # the skip reason when path is None: timeout, http_404, redirect_refused, ...
    error: str = ""  # what happened, in a few words
    cached: bool = False


class Failure(Exception):
    """An attempt that failed: the skip reason, a message, and whether another attempt may succeed."""

    def __init__(self, reason: str, message: str, retry: bool = False, after: Optional[float] = None):
        super().__init__(message)
        self.reason, self.retry, self.after = reason, retry, after


@dataclass(frozen=True)
class Address:
    ip: str
    public: bool  # globally routable; loopback, private, link-local, multicast, reserved, unspecified are not


def is_public(ip: str) -> bool:
    a = ipaddress.ip_address(ip.split("%", 1)[0])  # an IPv6 scope ("fe80::1%eth0") is not part of the address
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped:
        a = a.ipv4_mapped
    return a.is_global and not (
        a.is_multicast or a.is_reserved or a.is_loopback or a.is_link_local or a.is_unspecified or a.is_private
    )


def _kind(ip: str) -> str:
    a = ipaddress.ip_address(ip.split("%", 1)[0])
    for kind in ("loopback", "link_local", "multicast", "unspecified", "private", "reserved"):
        if getattr(a, f"is_{kind}"):
            return kind.replace("_", "-")
    return "non-public"


def resolve(host: str, port: int) -> list[Address]:
    """The host's addresses, each judged public or not. Tests replace this hook to play public hosts."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [Address(ip, is_public(ip)) for ip in dict.fromkeys(info[4][0] for info in infos)]


class Pacer:
    """Politeness: request starts to one host are at least `delay` seconds apart, whatever the
    number of download threads (other hosts are not held up). Every redirect hop waits its turn too."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.lock = threading.Lock()
        self.next: dict[str, float] = {}

    def wait(self, url: str) -> None:
        if self.delay <= 0:
            return
        host = (urlsplit(url).hostname or "").lower()
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next.get(host, now))
            self.next[host] = start + self.delay
        time.sleep(start - now)


class _Watchdog:
    """Shuts the hop's socket down when its time is up: a blocked connect, TLS handshake, status line,
    header or body read then returns at once, however slowly the server trickles bytes."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds
        self.lock = threading.Lock()
        self.sock: Optional[socket.socket] = None
        self.expired = False
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True
        self.timer.start()

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        with self.lock:
            self.sock = sock
            if self.expired:
                raise TimeoutError("deadline passed")

    def _fire(self) -> None:
        with self.lock:
            self.expired = True
            if self.sock is not None:
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # not connected yet (connect has its own timeout) or already closed

    def stop(self) -> None:
        self.timer.cancel()
        with self.lock:
            self.sock = None


def _tls() -> ssl.SSLContext:
    try:
        import certifi  # the CA bundle requests used before, where installed

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:
        return ssl.create_default_context()


TLS = _tls()


class _Connection(http.client.HTTPConnection):
    """http.client over a socket to an address that was checked (no second DNS lookup), TLS for https."""

    def __init__(self, host: str, port: int, addresses: list[Address], tls: bool, watchdog: _Watchdog):
        super().__init__(host, port, timeout=watchdog.remaining())
        self.addresses, self.tls, self.watchdog = addresses, tls, watchdog

    def connect(self) -> None:
        for n, address in enumerate(self.addresses):  # in the resolver's order, as browsers do
            ip = address.ip.split("%", 1)[0]
            sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM)
            try:
                self.watchdog.watch(sock)
                sock.settimeout(max(0.001, self.watchdog.remaining()))
                sock.connect((ip, self.port))
                break
            except OSError as e:
                sock.close()
                if self.watchdog.expired or isinstance(e, TimeoutError) or n == len(self.addresses) - 1:
                    raise
        self.sock = sock
        if self.tls:
            # The handshake is done after the watchdog holds the TLS socket (wrapping detaches the plain one).
            self.sock = TLS.wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
            self.watchdog.watch(self.sock)
            self.sock.do_handshake()


def _lookup(host: str, port: int, seconds: float) -> list[Address]:
    """`resolve` in a thread that is abandoned at the deadline (getaddrinfo cannot be interrupted)."""
    try:
        return [Address(host, is_public(host))]  # an address already: nothing to look up
    except ValueError:
        pass
    box: dict = {}

    def run():
        try:
            box["addresses"] = resolve(host, port)
        except Exception as e:  # handed to the caller's thread
            box["error"] = e

    worker = threading.Thread(target=run, daemon=True, name="diffaug-dns")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise Failure("timeout", f"looking up {host} took more than the timeout", retry=True)
    if "error" in box:
        e = box["error"]
        final = isinstance(e, socket.gaierror) and e.errno == socket.EAI_NONAME
        raise Failure("connection_failed", f"cannot resolve {host} ({e})", retry=not final)
    if not box["addresses"]:
        raise Failure("connection_failed", f"{host} has no address", retry=True)
    return box["addresses"]


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a Retry-After header (a number or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def _target(parts) -> str:
    """The request target, with characters http.client refuses percent-encoded (as browsers send them)."""
    path = parts.path or "/"
    return quote(path + (f"?{parts.query}" if parts.query else ""), safe="!#$%&'()*+,/:;=?@[]~")


def _host_port(parts) -> tuple[str, int]:
    try:
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        host = host.encode("idna").decode() if host and not host.isascii() else host
    except (ValueError, UnicodeError):
        raise Failure("connection_failed", "malformed address") from None
    if not host:
        raise Failure("connection_failed", "no host in the URL")
    return host, port


def _refuse_private(host: str, addresses: list[Address], first: bool) -> None:
    blocked = next(a.ip for a in addresses if not a.public)
    where = host if blocked == host else f"{host} ({blocked})"
    raise Failure(
        "address_refused" if first else "redirect_refused",
        ("" if first else "redirect from a public host to ") + f"{where}, a {_kind(blocked)} address, refused",
    )


def _hop(
    url: str, dest: Path, seconds: float, timeout: float, max_bytes: int, may_be_private: bool, first: bool
) -> Optional[tuple[str, bool]]:
    """One request. Returns (the redirect's target, whether this host is public), or None once the body
    is in `dest`. Every step shares the `seconds` left of the attempt's `timeout`, which a watchdog enforces."""
    parts = urlsplit(url)
    host, port = _host_port(parts)
    watchdog = _Watchdog(seconds)
    conn = response = None
    try:
        addresses = _lookup(host, port, watchdog.remaining())
        public = all(a.public for a in addresses)
        if not public and not may_be_private:
            _refuse_private(host, addresses, first)
        conn = _Connection(host, port, addresses, parts.scheme == "https", watchdog)
        conn.request("GET", _target(parts), headers=HEADERS)
        response = conn.getresponse()
        location = _redirect_or_raise(response)
        if location is not None:
            return urljoin(url, location), public  # its body is never read
        _stream(response, dest, max_bytes, watchdog)
        return None
    except Failure:
        raise
    except Exception as e:  # what a network can do: give it a reason
        raise _failure(e, watchdog.expired, timeout) from None
    finally:
        watchdog.stop()  # before the socket is closed: the watchdog must never touch a reused descriptor
        for closable in (response, conn):  # a redirect's or an error's body is dropped unread
            if closable is not None:
                closable.close()


def _redirect_or_raise(response: http.client.HTTPResponse) -> Optional[str]:
    """A redirect's Location, None for a 200, or the Failure of any other status."""
    status = response.status
    if status in (301, 302, 303, 307, 308):
        location = response.getheader("Location")
        if not location:
            raise Failure(f"http_{status}", f"HTTP {status} without a Location")
        return location.strip()
    if status != 200:
        after = _retry_after(response.getheader("Retry-After")) if status in (429, 503) else None
        raise Failure(f"http_{status}", f"HTTP {status}", retry=status in RETRY_STATUS, after=after)
    return None


def _failure(e: Exception, expired: bool, timeout: float) -> Failure:
    if expired or isinstance(e, (socket.timeout, TimeoutError)):
        return Failure("timeout", f"timed out after {timeout:g} s", retry=True)
    if isinstance(e, ssl.SSLError):  # a bad certificate or protocol does not fix itself
        return Failure("tls_error", f"TLS failed ({getattr(e, 'reason', None) or type(e).__name__})")
    if isinstance(e, http.client.InvalidURL):
        return Failure("connection_failed", f"malformed address ({e})")
    return Failure("connection_failed", f"connection failed ({type(e).__name__})", retry=True)


def _stream(response: http.client.HTTPResponse, dest: Path, max_bytes: int, watchdog: _Watchdog) -> None:
    """The body into a temporary file beside `dest`, renamed once complete; at most one chunk in memory."""
    length = response.getheader("Content-Length", "")
    declared = int(length) if length.strip().isdigit() else None
    if declared is not None and declared > max_bytes:
        raise Failure("too_large", f"too large ({declared} bytes > scrape.max_bytes = {max_bytes})")
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        size = 0
        with open(tmp, "wb") as f:
            while chunk := response.read1(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise Failure("too_large", f"too large (more than scrape.max_bytes = {max_bytes} bytes)")
                f.write(chunk)
        if watchdog.expired:  # the watchdog's shutdown reads as the end of the body
            raise TimeoutError()
        if declared is not None and size != declared:
            raise Failure("connection_failed", f"the body ended after {size} of {declared} bytes", retry=True)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def _attempt(url: str, dest: Path, timeout: float, max_bytes: int, trusted: bool, pacer: Optional[Pacer]) -> None:
    """One attempt: every hop, its lookup, connection, headers and the final body within `timeout` seconds
    (waits for the pacer excepted). A private address is allowed only where the user chose it: the first
    hop of a `trusted` URL, and redirects from a host that is itself private."""
    budget, may_be_private = timeout, trusted
    for hop in range(MAX_REDIRECTS + 1):
        if pacer:
            pacer.wait(url)
        if budget <= 0:
            raise Failure("timeout", f"timed out after {timeout:g} s", retry=True)
        start = time.monotonic()
        try:
            redirect = _hop(url, dest, budget, timeout, max_bytes, may_be_private, first=hop == 0)
        finally:
            budget -= time.monotonic() - start
        if redirect is None:
            return
        url, public = redirect
        if urlsplit(url).scheme not in SCHEMES:
            raise Failure("unsupported_scheme", f"redirected to a non-http(s) URL {url[:80]}")
        may_be_private = may_be_private and not public
    raise Failure("too_many_redirects", f"more than {MAX_REDIRECTS} redirects")


def _backoff(attempt: int) -> float:
    return min(8.0, 0.5 * 2 ** (attempt - 1)) * (1 + random.random() / 2)


def cached_path(url: str, cache: Path) -> Path:
    """Cache entries are named by the URL's hash: no part of a URL ever becomes a path."""
    return cache / (sha256_bytes(url.encode()) + ".bin")


def _nonempty(path: Path) -> bool:
    return path.stat().st_size > 0


@dataclass(frozen=True)
class Fetcher:
    """Downloads into `cache` with these limits. `trusted`: the user named the URLs (a `urls` row,
    `scrape.endpoint`), so their host may be private. A cached copy is reused if it passes `reusable`
    (one that does not is fetched again)."""

    cache: Path
    timeout: float
    max_bytes: int
    retries: int
    pacer: Optional[Pacer] = None
    trusted: bool = False
    reusable: Callable[[Path], bool] = _nonempty

    def fetch(self, url: str) -> Fetched:
        """Download `url` into the cache unless a cached copy is reusable."""
        if urlsplit(url).scheme not in SCHEMES:
            return Fetched(url, None, "unsupported_scheme", "not an http(s) URL")
        path = cached_path(url, self.cache)
        if path.exists():
            if self.reusable(path):
                return Fetched(url, path, cached=True)
            path.unlink(missing_ok=True)  # empty, not an image or truncated: never reused
        failure = self._attempts(url, path)
        if failure is None:
            return Fetched(url, path)
        message = str(failure)
        if failure.after is not None and failure.after > MAX_RETRY_AFTER:
            message += f" (asked to retry after {failure.after:g} s, more than the {MAX_RETRY_AFTER:g} s waited for)"
        return Fetched(url, None, failure.reason, message)

    def _attempts(self, url: str, path: Path) -> Optional[Failure]:
        """Up to `retries` + 1 attempts, with backoff (or the server's Retry-After); the last failure, if any."""
        failure = Failure("connection_failed", "no attempt")
        for attempt in range(self.retries + 1):
            if attempt:
                wait = _backoff(attempt)
                if failure.after is not None:
                    if failure.after > MAX_RETRY_AFTER:
                        break
                    wait = max(wait, failure.after)
                time.sleep(wait)
            try:
                _attempt(url, path, self.timeout, self.max_bytes, self.trusted, self.pacer)
                return None
            except Failure as e:
                failure = e
                if not e.retry:
                    break
        return failure

    def fetch_each(self, urls: Iterable[str], workers: int) -> Iterator[Fetched]:
        """Parallel downloads, yielded in the order of `urls` while later ones go on; a bounded number is
        in flight, so memory does not grow with the number of URLs."""
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: deque = deque()
            for url in urls:
                pending.append(pool.submit(self.fetch, url))
                if len(pending) >= IN_FLIGHT * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
