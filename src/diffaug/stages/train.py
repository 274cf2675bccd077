"""Stage `train`: data/mixed -> models/classifier (the best-validation ResNet-18) and its curves."""
import time
from pathlib import Path

from dvclive import Live
from safetensors.torch import save_file

from diffaug.classify.data import IMAGENET_MEAN, IMAGENET_STD, load_manifest_images
from diffaug.classify.model import build_model, use_small_stem
from diffaug.classify.train import fit, seed_everything
from diffaug.config import load_params
from diffaug.device import pick_device
from diffaug.io import atomic_dir, read_csv, read_json, write_json
from diffaug.stages import run

MIXED, MODEL, CURVES = Path("data/mixed"), Path("models/classifier"), "metrics/train"


def main() -> None:
    cfg = load_params().train
    device = pick_device(cfg.device)
    classes = read_json(MIXED / "classes.json")
    small_stem = use_small_stem(cfg.small_stem, cfg.image_size)
    generator = seed_everything(cfg.seed)
    model = build_model(len(classes), cfg.regime, small_stem)  # fails fast if weights are missing
    train = load_manifest_images(read_csv(MIXED / "train.csv"), classes, cfg.image_size)
    val = load_manifest_images(read_csv(MIXED / "val.csv"), classes, cfg.image_size)
    print(f"train: {len(train[0])} training and {len(val[0])} validation images, {cfg.regime} on {device}")

    start = time.perf_counter()
    # Curves through DVCLive; dvc.yaml declares them itself, so DVCLive writes no dvc.yaml.
    with Live(CURVES, dvcyaml=False, save_dvc_exp=False, report=None) as live:
        def log(m: dict) -> None:
            for key, value in m.items():
                if key != "epoch":
                    live.log_metric(key.replace("_", "/", 1), value)
            live.next_step()

        result = fit(model, train, val, cfg, device, generator, log)
        live.summary.update({"best_epoch": result.best_epoch, "best_val_accuracy": result.best_val_accuracy,
                             "seconds": round(time.perf_counter() - start, 1), "device": str(device)})

    with atomic_dir(MODEL) as out:
        save_file(result.state_dict, out / "model.safetensors")
        write_json(out / "meta.json", {
            "architecture": "resnet18", "classes": classes, "image_size": cfg.image_size,
            "small_stem": small_stem, "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "regime": cfg.regime,
            "best_epoch": result.best_epoch, "best_val_accuracy": result.best_val_accuracy,
        })
    print(f"train: best epoch {result.best_epoch}, validation accuracy {result.best_val_accuracy}")


if __name__ == "__main__":
    run(main)
