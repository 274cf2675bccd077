"""The classifiers and the measures: training, evaluation, the reference classifier, FID and zero-shot CLIP."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, Field

from diffaug.params.fields import (
    CheckpointEvery,
    Count,
    Device,
    ForwardBatch,
    Regime,
    Section,
    Seed,
    SmallStem,
    Template,
    _hub_or_folder,
)


class _Classifier(Section):
    """A ResNet-18 trained with SGD: what `train` and the `reference` classifier share."""

    epochs: Count = Field(description="training epochs")
    batch_size: int = Field(ge=2, description="images per SGD step")
    lr: float = Field(gt=0, description="SGD learning rate (the paper: 1.0e-3)")
    momentum: float = Field(ge=0, lt=1, description="SGD momentum (the paper: 0.9)")
    weight_decay: float = Field(ge=0, description="SGD weight decay")
    lr_schedule: Literal["constant", "cosine"] = Field(description="`constant` (the paper) or `cosine`")
    image_size: int = Field(ge=8, description="side in px images are resized to")
    small_stem: SmallStem = Field(description="3x3 stride-1 stem without max-pool: `auto` (at <= 64 px), true, false")
    augment: Literal["none", "standard", "randaugment"] = Field(
        description="`none`, `standard` (random crop), `randaugment` (then the same crop)"
    )
    hflip: bool = Field(description="horizontal flips with standard augmentation (wrong for digits and text)")
    compile: bool = Field(
        description="torch.compile the training steps (pays off on a GPU over many epochs; "
        "costs a minute of compiling first)"
    )
    seed: Seed = Field(description="seed of initialisation, order and augmentation")


class Train(_Classifier):
    regime: Regime = Field(description="`scratch`, `finetune` (ImageNet weights), `frozen` (only the head trains)")
    steps: Optional[Count] = Field(
        description="the training budget in SGD steps of `batch_size` images, the same for every mix (so runs on "
        "fewer images are not also trained less); `null`: `epochs` passes over the training set, "
        "the paper's fixed-epoch budget, which shrinks with the training set"
    )
    val_every: Count = Field(
        description="with `steps`: validate, and keep the best model, every this many steps and after the last"
    )
    threads: Optional[Count] = Field(
        description="CPU threads of training and evaluation: CPU float results depend on the thread count, so a "
        "fixed number gives the same result whatever runs the experiment (`null`: torch's default, "
        "recorded in the metrics)"
    )
    device: Device = Field(description="`auto` (CUDA > MPS > CPU), `cpu`, `cuda`, `cuda:N`, `mps`")
    checkpoint_every: CheckpointEvery


class Evaluate(Section):
    batch_size: ForwardBatch = Field(description="images per forward pass when scoring")


class Reference(_Classifier):
    """A classifier of d_original alone (from scratch): it scores how recognisable synthetic images are,
    and gives the offline FID features."""

    val_fraction: float = Field(ge=0.0, lt=1.0, description="share of d_original held out to pick its best epoch")

    def as_train(self, device: str) -> Train:
        # The reference trains on the fixed d_original: its budget is epochs, with torch's threads.
        return Train.model_validate(
            {
                **self.model_dump(exclude={"val_fraction"}),
                "regime": "scratch",
                "steps": None,
                "val_every": 1,
                "threads": None,
                "device": device,
                "checkpoint_every": 0,  # its few epochs of d_original are cheap to redo
            }
        )


class Fid(Section):
    features: Literal["reference", "inception"] = Field(
        description="`reference` (offline: the reference ResNet-18's 512-d features) or `inception` "
        "(pytorch-fid's InceptionV3, 2048-d, the paper)"
    )
    batch_size: ForwardBatch = Field(description="images per forward pass (does not change the numbers)")
    kid_subsets: Count = Field(description="KID: random subsets averaged (their std is reported)")
    kid_subset_size: int = Field(ge=2, description="KID: images per subset, capped at the smaller set")
    device: Device
    seed: Seed = Field(description="seed of the KID subsets")


class Clip(Section):
    """Zero-shot CLIP on data/test (stage clip_zero_shot), the paper's second baseline."""

    model: Optional[Annotated[str, AfterValidator(_hub_or_folder)]] = Field(
        description="`null` (skipped, offline) or a CLIP model: hub id or folder"
    )
    revision: str = Field(description="pin a commit for a reproducible number")
    template: Template = Field(description="one prompt per class (`{}` = class name)")
    batch_size: ForwardBatch
    device: Device
