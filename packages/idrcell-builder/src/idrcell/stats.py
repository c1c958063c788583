"""`idrcell stats`: how a dataset is made up, from its index (no shard is opened)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from idrcell.dataset import INDEX_FILE


class StatsError(RuntimeError):
    pass


def dataset_stats(out: Path | str) -> dict[str, Any]:
    """Counts of samples and channels per experiment, per imaging method and per channel count."""
    path = Path(out) / INDEX_FILE
    if not path.exists():
        raise StatsError(f"{path} does not exist; is {out} a finished idrcell dataset?")
    try:
        columns = pq.read_table(
            path, columns=["study", "container", "imaging_method", "n_channels"]
        ).to_pydict()
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise StatsError(f"{path} is not a readable index ({error})") from error
    experiments: Counter[str] = Counter()
    experiment_channels: Counter[str] = Counter()
    methods: Counter[str] = Counter()
    channel_counts: Counter[int] = Counter()
    for study, container, method, n_channels in zip(
        columns["study"], columns["container"], columns["imaging_method"], columns["n_channels"], strict=True
    ):
        name = f"{study}/{container}"
        experiments[name] += 1
        experiment_channels[name] += n_channels
        methods[method or "unknown"] += 1
        channel_counts[n_channels] += 1
    return {
        "samples": sum(experiments.values()),
        "channels": sum(experiment_channels.values()),
        "experiments": {
            name: {"samples": experiments[name], "channels": experiment_channels[name]}
            for name in sorted(experiments)
        },
        "imaging_methods": dict(sorted(methods.items())),
        "channel_counts": {str(k): v for k, v in sorted(channel_counts.items())},
    }
