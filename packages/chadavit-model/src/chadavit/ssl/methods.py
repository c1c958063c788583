"""The training objectives by name (`TrainConfig.objective`): the loop builds one from here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from chadavit.ssl.dino import DinoObjective
from chadavit.ssl.objective import Objective
from chadavit.ssl.supervised import SupervisedObjective

if TYPE_CHECKING:
    from chadavit.train.config import TrainConfig

# name -> builder(config, steps_per_epoch); a new objective is one more entry.
OBJECTIVES: dict[str, Callable[[TrainConfig, int], Objective]] = {
    "dino": DinoObjective.build,
    "supervised": SupervisedObjective.build,  # on the samples' `label` (chadavit.ssl.supervised)
}


def build_objective(config: TrainConfig, steps_per_epoch: int) -> Objective:
    """The objective `config.objective` names, built on the CPU, identically on every rank."""
    if config.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {config.objective!r}")
    return OBJECTIVES[config.objective](config, steps_per_epoch)
