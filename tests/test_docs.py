"""The docs site: its params page is the one `diffaug params --page` generates, and it builds without warnings."""

import subprocess
import sys
from pathlib import Path

from diffaug.__main__ import params_page
from diffaug.params import params_table

REPO = Path(__file__).resolve().parents[1]
PARAMS_PAGE = REPO / "docs" / "params.md"


def test_params_page_lists_every_param_as_the_models_describe_it():
    page = PARAMS_PAGE.read_text()
    assert params_table() in page and page == params_page(), (
        "docs/params.md is out of date: run `diffaug params --page > docs/params.md`"
    )


def test_site_builds_strict(tmp_path):
    # --strict turns every warning (a broken link, a page missing from nav) into a failure
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    assert (tmp_path / "site" / "params" / "index.html").is_file()
