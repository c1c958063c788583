"""What is checked before a run starts: until `prepare` returns, nothing is written and no rank runs.

A refusal here is a usage error (`chadavit-train` exits 2): a setting, the data folder, the run
folder or its checkpoint cannot be used. Anything that fails after `prepare` is a failed run
(`TrainingError`, exit 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from chadavit.data.channel_vocab import with_channel_vocabulary
from chadavit.data.loader import DataConfig, ShardSet, plan_epochs
from chadavit.train import checkpoint as ckpt
from chadavit.train.config import TrainConfig, check_config
from chadavit.train.distributed import launched_by_torchrun
from chadavit.train.validation import ConfigError

# Schedules are arrays of one value per step: a run longer than this is a typo, not a plan.
MAX_STEPS = 100_000_000


@dataclass(frozen=True)
class PreparedRun:
    config: TrainConfig
    shard_set: ShardSet
    world_size: int
    steps_per_epoch: int


def world_size_of(config: TrainConfig) -> int:
    """The ranks the run will have: `--nproc`, or torchrun's WORLD_SIZE."""
    if config.nproc > 1:
        if launched_by_torchrun():
            raise ConfigError(
                "--nproc starts its own workers; under torchrun leave it at 1 (torchrun sets the ranks)"
            )
        return config.nproc
    raw = os.environ.get("WORLD_SIZE", "1")
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"the environment variable WORLD_SIZE must be a positive integer, got {raw!r}")
    return int(raw)


def check_batch_fits(shard_set: ShardSet, data: DataConfig, world_size: int) -> None:
    """A batch larger than what a rank reads in an epoch would be filled by repeating its samples
    thousands of times (a run that looks hung): refuse it."""
    per_rank = shard_set.total // world_size
    if data.batch_size > per_rank:
        raise ConfigError(
            f"data.batch_size {data.batch_size} is larger than the {per_rank} samples each rank reads "
            f"per epoch ({shard_set.total} samples over {world_size} rank(s)); lower --batch-size"
        )


def prepare(config: TrainConfig) -> PreparedRun:
    """Check the config, the data, the run folder and the checkpoint to resume, in that order."""
    check_config(config)  # a TrainConfig checks itself when made; this catches one mutated since
    if not config.data_dir:
        raise ConfigError("no data directory given; pass --data DIR (a folder with shards/*.tar)")
    if not config.out_dir:
        raise ConfigError("no run directory given; pass --out RUN")
    out = Path(config.out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"run folder {out} exists and is not a folder; choose another --out")
    existing = next(folder for folder in (out, *out.absolute().parents) if folder.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"run folder {out} cannot be written ({existing} is not writable)")
    shard_set = ShardSet.scan(config.data_dir)  # a missing or empty data dir fails here, once
    config = with_channel_vocabulary(config)  # name-embedding models: the vocabulary, from the data
    world_size = world_size_of(config)
    found = ckpt.resolve_resume(config.resume, config.out_dir)  # a bad --resume before the data checks
    check_batch_fits(shard_set, config.data, world_size)
    steps_per_epoch, _ = plan_epochs(shard_set, config.data, 0, world_size)
    if config.epochs * steps_per_epoch > MAX_STEPS:
        raise ConfigError(
            f"{config.epochs} epochs of {steps_per_epoch} steps is more than {MAX_STEPS:,} steps; "
            "check --epochs and data.steps_per_epoch"
        )
    if found is not None:
        ckpt.check_resumable(*found, config, steps_per_epoch)
    return PreparedRun(config, shard_set, world_size, steps_per_epoch)
