"""Stage `reference`: a ResNet-18 trained on d_original alone (data/original -> models/reference).

It answers "does this synthetic image look like its class to a model of the real data?" for the
`measure` stages, independently of any mix or training regime, and gives the offline FID features.
"""

from diffaug import paths
from diffaug.classify.classifier import save_classifier, train_classifier
from diffaug.cli import run
from diffaug.data.mix import mix_class
from diffaug.device import pick_device
from diffaug.io import read_csv, read_json, write_json
from diffaug.params import Mix, load_params
from diffaug.paths import ORIGINAL, REFERENCE


def main() -> None:
    params = load_params()
    ref = params.reference
    cfg = ref.as_train(params.train.device)
    classes = read_json(ORIGINAL / "classes.json")
    rows = read_csv(ORIGINAL / "manifest.csv")
    # Validation from the real images only, as `mix` draws it.
    split = Mix(
        source="none",
        p=0.0,
        n_per_class=None,
        mode="replace",
        val_fraction=ref.val_fraction,
        val_from="original",
        seed=ref.seed,
        exclude_test_copies=False,
    )
    train, val = [], []
    for c in classes:
        t, v = mix_class(c, [r["file"] for r in rows if r["class"] == c], [], split)
        train += [{"class": c, "file": f} for f, _ in t]
        val += [{"class": c, "file": f} for f, _ in v]
    result, meta = train_classifier(train, val, classes, cfg, pick_device(cfg.device), root=ORIGINAL)
    save_classifier(REFERENCE, result, meta)
    write_json(paths.metrics("reference"), {"val_accuracy": result.best_val_accuracy, "best_epoch": result.best_epoch})
    print(f"reference: validation accuracy {result.best_val_accuracy} on d_original")


if __name__ == "__main__":
    run(main)
