"""The `search` source: web scraping as the paper did it, through an image search engine.

For each class, the query templates are filled with the class name and tried in order; result pages
are read until `per_class` valid, unique images are in hand. Downloads, validation and the content
hash are the ones of the other sources (`download.Fetcher`, `images.decode_image`,
`collect` in scrape.py), so a search image is accepted or skipped exactly like a listed URL.

Result pages are cached like the images ($DIFFAUG_CACHE/search): an interrupted scrape resumes
where it stopped, and a rerun sees the same results even after the engine's ranking changed.
Every request waits its turn per host (`scrape.delay`), search engine and image hosts alike, redirects
included. Result pages are written by strangers, so an image URL (and every redirect it leads to) must
resolve to a public address: a page cannot point the scraper at the user's own network. The engine's
address (`scrape.endpoint`) is the user's choice and may be anywhere.

icrawler's crawlers were not used: they hard-code the engine's address, download with their own
threads into their own storage without our checks, keep only `.jpg` URLs and drop the page the
image came from. Bing's result page is parsed here instead: each result is an `<a class="iusc">`
whose `m` attribute holds JSON with `murl` (the image) and `purl` (the page showing it).
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

from diffaug.data.candidates import Candidate, reusable_image
from diffaug.data.download import Fetcher, Pacer, cached_path
from diffaug.data.images import NotAnImage, decode_image, png_bytes
from diffaug.io import cache_dir, sha256_bytes
from diffaug.params import LICENCES, SEARCH_ENGINES, Scrape

ENGINES = {"bing": "https://www.bing.com/images/async"}
# Bing's licence filters (the `qft` argument). The engine filters by what the host page declares;
# it does not report the licence of a result, so the manifest records the filter, marked unverified.
LICENCE_FILTERS = {
    "any": "",
    "creative_commons": "+filterui:licenseType-Any",
    "public_domain": "+filterui:license-L1",
    "free_to_share_and_use": "+filterui:license-L2_L3_L4_L5_L6_L7",
    "free_to_share_and_use_commercially": "+filterui:license-L2_L3_L4",
    "free_to_modify_share_and_use": "+filterui:license-L2_L3_L5_L6",
    "free_to_modify_share_and_use_commercially": "+filterui:license-L2_L3",
}
# params.yaml is validated against config's copies of these names (config imports nothing from here).
assert tuple(ENGINES) == SEARCH_ENGINES and tuple(LICENCE_FILTERS) == LICENCES, "params and search.py disagree"
PAGE = 35  # results per request (Bing's page)
MAX_RESULTS = 1000  # Bing serves no more than the first 1,000 results of a query


@dataclass(frozen=True)
class Hit:
    image_url: str
    page_url: str  # the page that shows the image: the provenance a licence question starts from


class _BingResults(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hits: list[Hit] = []

    def handle_starttag(self, tag, attrs):
        meta = dict(attrs).get("m") if tag == "a" else None  # HTMLParser has unescaped &quot; already
        if not meta:
            return
        try:
            m = json.loads(meta)
        except ValueError:
            return
        if isinstance(m, dict) and isinstance(m.get("murl"), str) and m["murl"]:
            self.hits.append(Hit(m["murl"], m.get("purl") or ""))


def parse_bing(page: bytes) -> list[Hit]:
    parser = _BingResults()
    parser.feed(page.decode("utf-8", "replace"))
    parser.close()
    return parser.hits


def search_url(params: Scrape, query: str, first: int) -> str:
    args = {"q": query, "first": first, "count": PAGE, "adlt": "strict"}  # safe search on
    if LICENCE_FILTERS[params.licence]:
        args["qft"] = LICENCE_FILTERS[params.licence]
    return f"{params.endpoint or ENGINES[params.engine]}?{urlencode(args)}"


def licence_label(params: Scrape) -> str:
    return "" if params.licence == "any" else f"{params.engine} filter {params.licence} (unverified)"


def _usable_hash(file: Path | None, params: Scrape) -> str | None:
    """The content hash `collect` will dedupe on, or None if `collect` will skip the file."""
    if file is None:
        return None
    try:
        return sha256_bytes(png_bytes(decode_image(file, params.max_side, params.max_pixels)))
    except NotAnImage:
        return None


def search(classes: tuple[str, ...], params: Scrape) -> Iterator[Candidate]:
    """Candidates per class, in result order, stopping at `per_class` usable ones.

    Failed and duplicate results are yielded too, so the scrape report accounts for them.
    """
    pacer = Pacer(params.delay)
    limits = (params.timeout, params.max_bytes, params.retries, pacer)
    pages = Fetcher(cache_dir("search"), *limits, trusted=True)
    images = Fetcher(cache_dir("downloads"), *limits, reusable=reusable_image(params))
    seen: set[str] = set()  # across classes: `collect` keeps an image only under its first class
    for label in classes:
        usable = 0
        for query in (t.format(label) for t in params.queries):
            usable = yield from _query(label, query, usable, params, pages, images, seen)
            if usable == params.per_class:
                break


def _query(
    label: str, query: str, usable: int, params: Scrape, pages: Fetcher, images: Fetcher, seen: set[str]
) -> Generator[Candidate, None, int]:
    """One query's result pages, until the class has `per_class` usable images or the results end;
    returns the class's usable count."""
    tried: set[str] = set()
    first = 0
    while usable < params.per_class and first < MAX_RESULTS:
        hits = yield from _page(label, search_url(params, query, first), first, pages, tried)
        if not hits:  # past the last result the engine repeats itself or returns nothing
            break
        first += PAGE
        while hits and usable < params.per_class:
            # Download only about what is still missing, in parallel.
            chunk = hits[: max(params.per_class - usable, params.workers)]
            hits = hits[len(chunk) :]
            usable = yield from _download(label, chunk, usable, params, images, seen)
    return usable


def _page(label: str, url: str, first: int, pages: Fetcher, tried: set[str]) -> Generator[Candidate, None, list[Hit]]:
    """The hits of one result page not tried before (each image URL once, its first listing wins)."""
    page = pages.fetch(url)
    if page.error:
        yield Candidate(label, url, error=page.error, reason="search_failed")
        return []
    listed = parse_bing(page.path.read_bytes())
    if not listed:
        # A page without results (a block page, a changed format, or past the end) is not
        # kept: a rerun asks again. On a query's first page it is worth reporting.
        cached_path(url, pages.cache).unlink(missing_ok=True)
        if first == 0:
            yield Candidate(
                label, url, error="no results on the page (blocked, or its format changed?)", reason="search_empty"
            )
        return []
    hits = []
    for h in listed:
        if h.image_url not in tried:
            tried.add(h.image_url)
            hits.append(h)
    return hits


def _download(
    label: str, chunk: list[Hit], usable: int, params: Scrape, images: Fetcher, seen: set[str]
) -> Generator[Candidate, None, int]:
    """The chunk's images, downloaded in parallel, as candidates until the class is full; returns its usable count."""
    licence = licence_label(params)
    for hit, f in zip(chunk, list(images.fetch_each([h.image_url for h in chunk], params.workers))):
        if usable == params.per_class:
            break
        digest = _usable_hash(f.path, params)
        if digest and digest not in seen:
            seen.add(digest)
            usable += 1
        yield Candidate(
            label, hit.image_url, f.path, error=f.error, reason=f.reason, page_url=hit.page_url, licence=licence
        )
    return usable
