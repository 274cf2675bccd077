"""Stage `train`: data/mixed -> models/classifier (the best-validation ResNet-18) and its curves."""

from dvclive import Live

from diffaug.checkpoint import Checkpoints, checkpoint_key
from diffaug.classify.classifier import save_classifier, train_classifier
from diffaug.classify.train import budget
from diffaug.cli import run
from diffaug.device import Meter, host, pick_device, use_threads
from diffaug.io import read_csv, read_json
from diffaug.params import load_params
from diffaug.paths import CLASSIFIER, MIXED, TRAIN_CURVES


def main() -> None:
    cfg = load_params().train
    device = pick_device(cfg.device)
    use_threads(cfg.threads)
    classes = read_json(MIXED / "classes.json")
    train_rows = read_csv(MIXED / "train.csv")
    meter = Meter(device)
    # Keyed by the params and the mix: a rerun after a kill resumes, any other run starts afresh.
    key = checkpoint_key(cfg.model_dump(), [MIXED / f for f in ("train.csv", "val.csv", "classes.json")], str(device))
    checkpoints = Checkpoints("train", key, cfg.checkpoint_every)
    # Curves through DVCLive; dvc.yaml declares them itself, so DVCLive writes no dvc.yaml.
    with Live(str(TRAIN_CURVES), dvcyaml=False, save_dvc_exp=False, report=None) as live:

        def log(m: dict) -> None:
            for key, value in m.items():
                if key not in ("epoch", "step"):
                    live.log_metric(key.replace("_", "/", 1), value)
            live.next_step()

        result, meta = train_classifier(
            train_rows, read_csv(MIXED / "val.csv"), classes, cfg, device, log, checkpoints=checkpoints
        )
        # The budget it had, what it cost (for `dvc exp show` and the study's GPU-hour sums) and where it ran.
        spent = budget(len(train_rows), cfg)
        live.summary.update(
            {
                **spent,
                "best_epoch": result.best_epoch,
                "best_step": result.best_step,
                "best_val_accuracy": result.best_val_accuracy,
                **meter.reading(spent["images_seen"], "images"),
                "host": host(device),
            }
        )
    save_classifier(CLASSIFIER, result, meta)
    checkpoints.clear()  # the model is in place: a rerun is DVC's business now
    print(
        f"train: {spent['steps']} SGD steps ({spent['images_seen']} images seen, {spent['budget']} budget), best "
        f"at step {result.best_step}, validation accuracy {result.best_val_accuracy}"
    )


if __name__ == "__main__":
    run(main)
