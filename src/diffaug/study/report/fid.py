"""The paper's Table 1: FID (and KID beside it) per class and synthetic source."""

from __future__ import annotations

from dataclasses import dataclass

from diffaug.errors import DiffaugError
from diffaug.paths import metrics_name
from diffaug.study.experiments import Run
from diffaug.study.report.points import source_rank

OVERALL = "overall"


@dataclass
class FidTable:
    extractor: str | None
    results: dict[str, dict]  # source -> its metrics/fid/<source>.json, in report order
    classes: list[str]

    def cell(self, source: str, row: str) -> dict:
        """{fid, kid, kid_std} of `source` for a class or OVERALL; {} where it was not measured."""
        result = self.results[source]
        cell = result if row == OVERALL else (result.get("per_class") or {}).get(row, {})
        return {k: v for k, v in cell.items() if v is not None}  # a class with too few images: no score

    def best(self, row: str, metric: str) -> set[str]:
        """The sources with the lowest `metric` (fid or kid) in a row (more than one on a tie)."""
        scored = {s: self.cell(s, row)[metric] for s in self.results if metric in self.cell(s, row)}
        return {s for s, v in scored.items() if v == min(scored.values())}


def fid_table(runs: list[Run], classes: list[str]) -> FidTable:
    """Per source, the FID/KID results of the first run that has them (any metrics/fid/<name>.json);
    all must share one feature extractor (numbers of two networks are on different scales)."""
    found: dict[str, dict] = {}
    for run in runs:
        for path, result in run.metrics.items():
            if (source := metrics_name(path, "fid")) and "fid" in result:
                found.setdefault(source, result)
    extractors = {res.get("extractor_id", res.get("extractor")) for res in found.values()}
    if len(extractors) > 1:
        raise DiffaugError(
            f"the FID results were computed with different feature extractors ({sorted(extractors)}); "
            "rerun `dvc repro` so every fid@<source> uses the same fid.features."
        )
    results = {s: found[s] for s in sorted(found, key=source_rank)}
    in_results = {c for res in results.values() for c in res.get("per_class") or {}}
    order = [c for c in classes if c in in_results] + sorted(in_results - set(classes))
    extractor = next(iter(results.values())).get("extractor") if results else None
    return FidTable(extractor, results, order)
