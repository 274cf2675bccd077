"""Stage `train`: data/mixed -> models/classifier (the best-validation ResNet-18) and its curves."""
import time
from pathlib import Path

import torch
from dvclive import Live

from diffaug.classify.classifier import save_classifier, train_classifier
from diffaug.config import load_params
from diffaug.device import pick_device
from diffaug.io import read_csv, read_json
from diffaug.stages import run

MIXED, MODEL, CURVES = Path("data/mixed"), Path("models/classifier"), "metrics/train"


def main() -> None:
    cfg = load_params().train
    device = pick_device(cfg.device)
    classes = read_json(MIXED / "classes.json")
    train_rows = read_csv(MIXED / "train.csv")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    # Curves through DVCLive; dvc.yaml declares them itself, so DVCLive writes no dvc.yaml.
    with Live(CURVES, dvcyaml=False, save_dvc_exp=False, report=None) as live:
        def log(m: dict) -> None:
            for key, value in m.items():
                if key != "epoch":
                    live.log_metric(key.replace("_", "/", 1), value)
            live.next_step()

        result, meta = train_classifier(train_rows, read_csv(MIXED / "val.csv"), classes, cfg, device, log)
        seconds = time.perf_counter() - start
        # What the run cost, for `dvc exp show` and the study's GPU-hour sums.
        cuda = device.type == "cuda"
        live.summary.update({"best_epoch": result.best_epoch, "best_val_accuracy": result.best_val_accuracy,
                             "seconds": round(seconds, 1),
                             "device": torch.cuda.get_device_name(device) if cuda else str(device),
                             "images_per_second": round(len(train_rows) * cfg.epochs / seconds, 1),
                             "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if cuda else None})
    save_classifier(MODEL, result, meta)
    print(f"train: best epoch {result.best_epoch}, validation accuracy {result.best_val_accuracy}")


if __name__ == "__main__":
    run(main)
