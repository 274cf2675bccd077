"""Memory of the `urls` scrape against the number of rows: bodies must not pile up in memory.

    PYTHONPATH=src python benchmarks/scrape_memory.py [--rows 500 5000] [--body 20000] [--repeat 3]

A 127.0.0.1 server (in this process) serves one distinct PNG per row, padded to `--body` bytes with a
chunk decoders skip; each run scrapes the CSV in a fresh child process (an empty download cache) and
reports, for that child:
  - rss:    the growth of its resident memory during the scrape (peak RSS minus RSS before), in MB;
  - python: tracemalloc's peak of Python allocations during the scrape (a second child: tracing is slow), in MB;
  - bodies: the bytes downloaded, for comparison (what a scraper holding every body would need), in MB.
Each figure is the best of `--repeat` runs, with the spread (max - min). Numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, time, tracemalloc
from diffaug.params import load_params
from diffaug.data.scrape import scrape
import dataclasses
csv_path, out, trace = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
params = dataclasses.replace(load_params(sys.argv[4]).scrape, source="urls", path=csv_path, timeout=10.0, retries=0)
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = rss()
if trace:
    tracemalloc.start()
start = time.perf_counter()
report = scrape(params, ("cat",), __import__("pathlib").Path(out))
seconds = time.perf_counter() - start
peak_python = tracemalloc.get_traced_memory()[1] if trace else None
peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"images": report["images"], "skipped": report["skipped"], "seconds": seconds,
                  "rss": peak_rss - before, "python": peak_python}))
"""


def padded_png(i: int, size: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (i % 256, (i // 256) % 256, i // 65536)).save(buf, format="PNG")
    png = buf.getvalue()
    pad = bytes(max(0, size - len(png) - 12))
    chunk = struct.pack(">I", len(pad)) + b"prVt" + pad + struct.pack(">I", zlib.crc32(b"prVt" + pad))
    return png[:33] + chunk + png[33:]


def serve(body: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            m = re.fullmatch(r"/n/(\d+)\.png", self.path)
            if not m:
                self.send_error(404)
                return
            data = padded_png(int(m.group(1)), body)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def run_child(csv_path: Path, work: Path, trace: bool) -> dict:
    out = Path(tempfile.mkdtemp(dir=work))
    env = dict(os.environ, DIFFAUG_CACHE=tempfile.mkdtemp(dir=work))
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(csv_path), str(out), "1" if trace else "0", str(params)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--body", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    httpd = serve(args.body)
    port = httpd.server_address[1]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for rows in args.rows:
            csv_path = work / f"urls-{rows}.csv"
            csv_path.write_text(
                "url,label\n" + "".join(f"http://127.0.0.1:{port}/n/{i}.png,cat\n" for i in range(rows))
            )
            runs = [run_child(csv_path, work, trace=False) for _ in range(args.repeat)]
            traced = [run_child(csv_path, work, trace=True) for _ in range(args.repeat)]
            assert all(r["images"] == rows and not r["skipped"] for r in runs + traced), runs + traced
            rss = [r["rss"] / 1e6 for r in runs]
            python = [r["python"] / 1e6 for r in traced]
            seconds = [r["seconds"] for r in runs]
            print(
                f"rows {rows:>6}  bodies {rows * args.body / 1e6:7.1f} MB  "
                f"rss +{min(rss):6.1f} MB (spread {max(rss) - min(rss):4.1f})  "
                f"python peak {min(python):6.1f} MB (spread {max(python) - min(python):4.1f})  "
                f"time {min(seconds):5.1f} s (spread {max(seconds) - min(seconds):4.1f})"
            )
    httpd.shutdown()


if __name__ == "__main__":
    main()
