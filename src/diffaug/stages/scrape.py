"""Stage `scrape`: collect `d_raw` into data/raw/<class>/ with a provenance manifest."""

from diffaug import paths
from diffaug.cli import run
from diffaug.data.scrape import scrape
from diffaug.io import atomic_dir, write_json
from diffaug.params import load_params
from diffaug.paths import RAW


def main() -> None:
    params = load_params()
    with atomic_dir(RAW) as out:
        report = scrape(params.scrape, params.classes, out)
        write_json(out / "classes.json", list(params.classes))
        write_json(out / "report.json", report)
    write_json(paths.metrics("scrape"), {"images": report["images"], "skipped": report["skipped"]})
    print(f"scrape: {report['images']} images, skipped {report['skipped'] or 'none'}")


if __name__ == "__main__":
    run(main)
