"""Copies and leaks per synthetic source: the shares of near duplicates of d_test and d_original images
(metrics/copies/<source>.json of the measure stages), a source flagged above `copies.flag_share`."""

from __future__ import annotations

from diffaug.paths import metrics_name
from diffaug.study.experiments import Run
from diffaug.study.report.points import source_rank

REFERENCES = ("test", "original")


def copies_table(runs: list[Run]) -> dict[str, dict]:
    """Per source (report order), the copies result of the first run that has one."""
    found: dict[str, dict] = {}
    for run in runs:
        for path, result in run.metrics.items():
            if (source := metrics_name(path, "copies")) and "test" in result:
                found.setdefault(source, result)
    return {s: found[s] for s in sorted(found, key=source_rank)}


def flagged(result: dict) -> bool:
    """More near duplicates of test images than the measure's `copies.flag_share`: a leak worth reading."""
    return (result.get("test") or {}).get("share", 0.0) > result.get("flag_share", 1.0)
