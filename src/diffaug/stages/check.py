"""Stage `check`: params.yaml against its models, before any stage with outputs runs.

DVC deletes a stage's outputs before running its command, so a check inside `mix` would come too
late: `dvc exp run -S mix.p=1.5` would already have removed data/mixed. Every other stage depends
on this stage's output, so DVC runs it first; its output is the same bytes whenever the params are
valid, so a change that passes reruns nothing downstream by itself. It also refuses a `folder` source
holding a file name that is not UTF-8, which DVC crashes on (naming no file) when it hashes the folder.
"""

from pathlib import Path

from diffaug.cli import run
from diffaug.io import atomic_write_bytes, require_utf8_names
from diffaug.params import ParamsError, load_params

CHECKED = Path("params.checked")
# DVC writes `-S` values into params.yaml before any stage runs and leaves them there when the run fails.
# A workspace `dvc exp run` also runs `dvc checkout` before any stage: it unlinks the outputs of stages the
# new params no longer define (a class or source dropped), which only the checkout below brings back.
RESTORE = (
    "a refused `dvc exp run -S` leaves its value in params.yaml, so `dvc repro` stops here until you fix it; "
    "`git checkout params.yaml && dvc checkout` restores the committed params and any output DVC unlinked"
)


def main() -> None:
    try:
        params = load_params()
    except ParamsError as e:
        raise ParamsError(f"{str(e).removesuffix('.')}; {RESTORE}.") from None
    if params.scrape.source == "folder":
        require_utf8_names(params.scrape.path)  # before DVC hashes the folder: it crashes on such a name
    atomic_write_bytes(CHECKED, b"params.yaml passed its checks\n")


if __name__ == "__main__":
    run(main)
