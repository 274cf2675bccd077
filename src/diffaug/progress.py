"""Progress of long work on the terminal, and readable logs where there is none.

On a terminal a tqdm bar redraws in place (rate, ETA, running loss). In a log file or DVC's queue
the redraws would pile up as one line of carriage returns, so there the bar writes a plain line at
every tenth of the work instead. Display only: nothing here changes what a stage computes.
"""

from __future__ import annotations

import importlib
import math
import sys
from typing import Optional, TextIO

from tqdm import tqdm

LOG_LINES = 10  # lines a bar writes into a log: one per tenth of the work


class Lines:
    """A stream for tqdm that turns each redraw ("\\r" + status + padding) into one line of its own."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").rstrip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or wrapped stream
        return False


def bar(total: int, desc: str, unit: str, initial: int = 0, disable: bool = False, stream: Optional[TextIO] = None):
    """A tqdm bar in the project's style on stderr; `initial`: work already done (a resumed run)."""
    stream = stream or sys.stderr
    if is_terminal(stream):
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=disable, file=stream)
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        disable=disable,
        file=Lines(stream),
        ncols=100,
        miniters=max(1, math.ceil(total / LOG_LINES)),  # a line per tenth, not per redraw
        mininterval=0,
        maxinterval=float("inf"),  # no monitor thread changing miniters behind our back
    )


def quiet_libraries() -> None:
    """Silence diffusers' and transformers' own loading bars and warnings ("Loading pipeline
    components", "Loading weights"): the stage's bar and summary line say what matters. Call it
    after importing them; a library not imported yet is not imported here (diffusers takes seconds)."""
    for name in ("diffusers", "transformers"):
        if name in sys.modules:
            logging = importlib.import_module(f"{name}.utils.logging")
            logging.disable_progress_bar()
            logging.set_verbosity_error()
