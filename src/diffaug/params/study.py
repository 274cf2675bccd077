"""`diffaug study`'s grid."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, Field

from diffaug.params.fields import Count, Proportion, Regime, Section, Seed, _non_empty


class Study(Section):
    """`diffaug study`: the grid it queues as DVC experiments. No stage reads it."""

    sources: list[str] = Field(description="synthetic sources of the grid (the `none` baseline is always added)")
    p: Annotated[list[Proportion], AfterValidator(_non_empty)] = Field(description="values of p")
    regimes: Annotated[dict[Regime, Optional[Count]], AfterValidator(_non_empty)] = Field(
        description="regime: its budget, in `train.steps` (or `train.epochs` where `train.steps` is `null`); "
        "`null` keeps the workspace's"
    )
    budget: Optional[Literal["steps", "epochs"]] = Field(
        description="the unit of the regimes' budgets: `steps` (equal for every mix) or `epochs` (the paper's); "
        "`null`: `train`'s (steps where `train.steps` is set)"
    )
    seeds: Annotated[list[Seed], AfterValidator(_non_empty)] = Field(
        description="seeds; each experiment sets `train.seed` and `mix.seed` to one"
    )
    jobs: Count = Field(description="experiments run at once (`dvc queue start -j`)")
    target: Optional[str] = Field(
        description="the stage each experiment reproduces with its upstream (`dvc exp run <target>`): a grid "
        "point sets only mix and train params, so DVC checks out and checks only what that stage needs; "
        "`null`: every stage"
    )
    randaugment: bool = Field(description="also run the RandAugment baseline (only original, p = 0)")
    real_per_class: list[Count] = Field(
        description="the real-image yardstick: only original with k real images a class (p = 0, "
        "`mix.n_per_class=k`) for each k; may be empty"
    )
    add_per_class: list[Count] = Field(
        description="few-shot adding: at each k, every source with k real + k synthetic images a class "
        "(`mix.mode=add`, p = 1, `mix.n_per_class=k`) and only original at k; may be empty"
    )
    executor: Literal["queue", "ray"] = Field(
        description="queue: DVC's queue on this machine (`dvc queue start -j jobs`); ray: one Ray task per "
        "experiment, each in its own clone, on every GPU of this machine or of a Ray cluster"
    )
    retries: Annotated[int, Field(ge=0)] = Field(description="ray: times a failed experiment is run again")
    gpus_per_run: Annotated[float, Field(gt=0)] = Field(
        description="ray, where the cluster has GPUs: each experiment's share of a GPU (0.25 packs four on one)"
    )
    cpus_per_run: Count = Field(description="ray, where the cluster has no GPU: CPU cores each experiment reserves")
