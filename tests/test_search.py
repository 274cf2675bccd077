"""The `search` scrape source against a 127.0.0.1 server playing Bing's result pages and the image hosts."""

from __future__ import annotations

import html
import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from test_scrape import Server, check_output, encode, ok, redirect, status

from diffaug.data import download
from diffaug.data import search as search_module
from diffaug.data.download import Address
from diffaug.data.scrape import scrape
from diffaug.data.search import parse_bing
from diffaug.errors import DiffaugError
from helpers import params_file, pattern, section

# Result pages are written by strangers, so image URLs must lead to public addresses. The test's image host
# plays a public one: the resolver hook sends its name to 127.0.0.1 and calls it public; the search engine's
# address (scrape.endpoint) is the user's choice and stays 127.0.0.1.
IMAGE_HOST = "img.example"


def result_page(hits: list[tuple[str, str]]) -> bytes:
    """What Bing's /images/async returns, reduced to what matters: one <a class="iusc" m=...> per result."""
    items = "".join(
        f'<li><div class="imgpt"><a class="iusc" href="/images/search?view=detailV2" '
        f'm="{html.escape(json.dumps({"cid": str(i), "purl": page, "murl": image, "t": "a title"}))}">'
        f'<img src="/th?id=OIP.{i}"/></a></div></li>'
        for i, (image, page) in enumerate(hits)
    )
    return f'<html><body><ul class="dgControl_list">{items}<a m="not json">x</a></ul></body></html>'.encode()


class Routes(dict):
    """Exact paths for the image hosts; /images/async answers queries from `results`."""

    def __init__(self, server: Server):
        super().__init__()
        self.server, self.results, self.times = server, {}, []

    def get(self, path, default=None):
        self.times.append(time.monotonic())
        parts = urlsplit(path)
        if parts.path != "/images/async":
            return super().get(path) or super().get(parts.path, default)
        q = parse_qs(parts.query)
        hits = self.results.get(q["q"][0], [])
        first, count = int(q["first"][0]), int(q["count"][0])
        hits = hits[first : first + count] or hits[-count:]  # past the end Bing repeats its last page
        return ok(result_page(hits), "text/html")


@pytest.fixture
def web(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFAUG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(search_module, "PAGE", 4)  # small pages, so paging is exercised
    s = Server()
    s.routes = Routes(s)
    real = download.resolve
    monkeypatch.setattr(
        download,
        "resolve",
        lambda host, port: [Address("127.0.0.1", public=True)] if host == IMAGE_HOST else real(host, port),
    )
    s.image_url = lambda path: f"http://{IMAGE_HOST}:{s.httpd.server_address[1]}{path}"
    yield s
    s.close()


CAT = [encode(pattern(i, 48)) for i in range(1, 6)]
DOG = [encode(pattern(i, 48), "JPEG", quality=95) for i in range(10, 13)]


def setup_web(web: Server) -> None:
    u = web.image_url
    web.routes.update({f"/cat/{i}.png": ok(d) for i, d in enumerate(CAT)})
    web.routes.update({f"/dog/{i}.jpg": ok(d, "image/jpeg") for i, d in enumerate(DOG)})
    web.routes.update(
        {
            "/cat/copy.png": ok(CAT[0]),
            "/cat/page.png": ok(b"<html>login</html>", "text/html"),
            "/cat/half.png": ok(CAT[1][: len(CAT[1]) // 2]),
            "/cat/gone.png": status(404),
        }
    )
    page = lambda n: web.url(f"/pages/{n}.html")  # never fetched
    web.routes.results = {
        "cat photo": [
            (u("/cat/0.png"), page(0)),
            (u("/cat/gone.png"), page(1)),
            (u("/cat/copy.png"), page(2)),
            (u("/cat/page.png"), page(3)),
            (u("/cat/0.png"), page(4)),  # the same URL listed twice
            (u("/cat/half.png"), page(5)),
            (u("/cat/1.png"), page(6)),
            (u("/cat/2.png"), page(7)),
            (u("/cat/3.png"), page(8)),
            (u("/cat/4.png"), page(9)),
        ],
        # dog: the first query runs dry after one image, the second query fills up; it also
        # returns a cat image, which belongs to `cat` already (first class wins).
        "dog photo": [(u("/dog/0.jpg"), page(20))],
        "a dog": [(u("/cat/1.png"), page(21)), (u("/dog/1.jpg"), page(22)), (u("/dog/2.jpg"), page(23))],
    }


def params(web: Server, **kw):
    base = dict(
        source="search",
        endpoint=web.url("/images/async"),
        queries=["{} photo", "a {}"],
        per_class=3,
        delay=0.0,
        timeout=2.0,
        retries=0,
        workers=4,
    )
    return section("scrape", **{**base, **kw})


def test_parse_bing_reads_image_and_page_urls():
    page = result_page([("https://img.example/a.jpg?x=1&y=2", "https://site.example/p"), ("https://i/b.png", "")])
    assert [(h.image_url, h.page_url) for h in parse_bing(page)] == [
        ("https://img.example/a.jpg?x=1&y=2", "https://site.example/p"),
        ("https://i/b.png", ""),
    ]
    assert parse_bing(b"<html>no results</html>") == []


def test_search_collects_per_class_valid_unique_images_with_provenance(web, tmp_path):
    setup_web(web)
    out = tmp_path / "out"
    out.mkdir()
    report = scrape(params(web, licence="creative_commons"), ("cat", "dog"), out)
    rows = check_output(out, report, ("cat", "dog"))
    assert report["per_class"] == {"cat": 3, "dog": 3}
    # cat: 0.png, then gone (404), copy (duplicate content), page (HTML), half (truncated), 1.png, 2.png;
    # the second listing of 0.png is not fetched again and 3.png, 4.png are never needed.
    assert [r["source"] for r in rows if r["class"] == "cat"] == sorted(
        [web.image_url("/cat/0.png"), web.image_url("/cat/1.png"), web.image_url("/cat/2.png")],
        key=lambda s: next(r["file"] for r in rows if r["source"] == s),
    )
    assert web.hits["/cat/3.png"] == web.hits["/cat/4.png"] == 0
    assert report["skipped"] == {"http_404": 1, "duplicate": 2, "not_an_image": 2}
    by_src = {r["source"]: r for r in rows}
    assert by_src[web.image_url("/cat/1.png")]["page_url"] == web.url("/pages/6.html")
    assert by_src[web.image_url("/dog/2.jpg")]["page_url"] == web.url("/pages/23.html")
    assert {r["licence"] for r in rows} == {"bing filter creative_commons (unverified)"}
    # the engine was asked with safe search and the licence filter
    asked = [p for p in web.hits if p.startswith("/images/async")]
    assert all("adlt=strict" in p and "qft=" in p for p in asked)


def test_search_resumes_from_the_cache_without_any_request(web, tmp_path):
    setup_web(web)
    outs = [tmp_path / "a", tmp_path / "b"]
    for o in outs:
        o.mkdir()
    first = scrape(params(web), ("cat", "dog"), outs[0])
    before = dict(web.hits)
    second = scrape(params(web), ("cat", "dog"), outs[1])
    # Pages and images come from $DIFFAUG_CACHE; only the failed link and the cached bodies that are no
    # image (an HTML page, a truncated PNG) are asked for again.
    assert {p: n - before.get(p, 0) for p, n in web.hits.items() if n != before.get(p, 0)} == {
        "/cat/gone.png": 1,
        "/cat/page.png": 1,
        "/cat/half.png": 1,
    }
    assert first == second
    files = lambda o: {p.relative_to(o).as_posix(): p.read_bytes() for p in o.rglob("*") if p.is_file()}
    assert files(outs[0]) == files(outs[1])
    assert all(r["licence"] == "" for r in check_output(outs[0], first, ("cat", "dog")))


def test_search_waits_between_requests_to_one_host(web, tmp_path):
    setup_web(web)
    out = tmp_path / "out"
    out.mkdir()
    web.routes.update({"/cat/moved.png": redirect(web.image_url("/cat/4.png"))})
    web.routes.results["cat photo"][1] = (web.image_url("/cat/moved.png"), "")  # its target is paced too
    scrape(params(web, delay=0.1, per_class=3), ("cat",), out)
    assert web.hits["/cat/4.png"] == 1  # reached through the redirect
    for host, requests in (("127.0.0.1", 2), (IMAGE_HOST, 6)):  # the search engine and the image host
        times = [t for h, _, t in web.log if h.split(":")[0] == host]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert len(times) >= requests and min(gaps) >= 0.07, host  # parallel workers, one at a time (jitter: 30 ms)


def test_search_engine_unreachable_names_the_class(web, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DiffaugError) as e:
        scrape(params(web, endpoint=web.url("/nothing-here")), ("cat",), out)
    assert "'cat'" in str(e.value) and "search_failed" in str(e.value) and "404" in str(e.value)


@pytest.mark.parametrize(
    "scrape, key",
    [
        ({"source": "search", "engine": "altavista"}, "scrape.engine"),
        ({"source": "search", "queries": ["photos"]}, "scrape.queries"),
        ({"source": "search", "per_class": 0}, "scrape.per_class"),
        ({"source": "search", "licence": "mine"}, "scrape.licence"),
        ({"source": "search", "delay": -1.0}, "scrape.delay"),
    ],
)
def test_search_params_are_checked(tmp_path, scrape, key):
    from diffaug.params import ParamsError, load_params

    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        load_params(params_file(tmp_path, classes=["cat", "dog"], scrape=scrape))


def test_search_page_without_results_is_reported_and_not_cached(web, tmp_path):
    web.routes["/blocked"] = ok(b"<html><body>Please solve this puzzle</body></html>", "text/html")
    out = tmp_path / "out"
    out.mkdir()
    for _ in range(2):
        with pytest.raises(DiffaugError) as e:
            scrape(params(web, endpoint=web.url("/blocked"), queries=["{} photo"]), ("cat",), out)
        assert "search_empty" in str(e.value) and "'cat'" in str(e.value)
    assert sum(n for p, n in web.hits.items() if p.startswith("/blocked")) == 2  # asked again, not cached


def test_search_results_cannot_point_at_the_users_network(web, tmp_path):
    """A result page may list loopback addresses, or a public host redirecting there: all refused, unfetched."""
    port = web.httpd.server_address[1]
    web.routes.update(
        {
            "/cat/0.png": ok(CAT[0]),
            "/cat/1.png": ok(CAT[1]),
            "/cat/2.png": ok(CAT[2]),
            "/cat/3.png": ok(CAT[3]),
            "/go-home": redirect(web.url("/cat/1.png")),
        }
    )
    web.routes.results = {
        "cat photo": [
            (web.url("/cat/0.png"), ""),  # 127.0.0.1 itself
            (web.image_url("/go-home"), ""),  # a public host's 302 to 127.0.0.1
            (f"http://localhost:{port}/cat/2.png", ""),  # a name that resolves to loopback
            (web.image_url("/cat/3.png"), ""),
        ]
    }
    out = tmp_path / "out"
    out.mkdir()
    report = scrape(params(web, per_class=1, queries=["{} photo"], retries=2), ("cat",), out)
    rows = check_output(out, report, ("cat",))
    assert [r["source"] for r in rows] == [web.image_url("/cat/3.png")]
    assert report["skipped"] == {"address_refused": 2, "redirect_refused": 1}
    assert "loopback" in report["skipped_examples"]["redirect_refused"]
    assert web.hits["/cat/0.png"] == web.hits["/cat/1.png"] == web.hits["/cat/2.png"] == 0
    assert web.hits["/go-home"] == 1  # a refusal is final: not retried
