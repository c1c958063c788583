"""What a task's run function gets: one loaded model, the datasets found, the settings, the output folder.

Embeddings are computed once per dataset and setting and shared by every task of the model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from chadavit_bench.datasets.base import DownstreamDataset
from chadavit_bench.embed import ALL_TOKENS, Embeddings, EmbedSetting, all_tokens_bytes, extract_embeddings
from chadavit_bench.models import LoadedModel
from chadavit_bench.results import Row, rows_for
from chadavit_bench.tasks.base import Flag, Skip, TaskOutput

if TYPE_CHECKING:
    from chadavit_bench.config import BenchConfig


def slug(label: str) -> str:
    """A file name for a model label: readable part plus a short hash, so distinct labels never collide."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "model"
    return f"{readable}-{hashlib.sha1(label.encode()).hexdigest()[:6]}"


class ModelContext:
    def __init__(
        self, loaded: LoadedModel, found: dict[str, DownstreamDataset], config: BenchConfig, out: Path
    ):
        self.loaded = loaded
        self.found = found
        self.config = config
        self.out = out
        self.cache_dir = out / "cache"
        self._memory: dict[tuple[str, EmbedSetting], Embeddings] = {}

    @property
    def label(self) -> str:
        return self.loaded.label

    def embeddings(self, name: str, setting: EmbedSetting | None = None) -> Embeddings:
        setting = setting or EmbedSetting(img_size=self.config.img_size, prepare=self.config.image_prep)
        fixed = self.fixed_channels
        if fixed is not None and setting.channels is None:
            # A standard ViT (Conv2d over a fixed number of channels) sees the first ones, as the
            # authors trained theirs; datasets with fewer are skipped in `usable_features`.
            setting = dataclasses.replace(setting, channels=tuple(self.found[name].channel_names[:fixed]))
        if (name, setting) not in self._memory:
            self._memory[(name, setting)] = extract_embeddings(
                self.loaded.model,
                self.loaded.checksum,
                self.found[name],
                setting,
                self.cache_dir,
                batch_size=self.config.batch_size,
                device=self.config.device,
                workers=self.config.workers,
            )
        return self._memory[(name, setting)]

    def splits(self, name: str) -> tuple[DownstreamDataset, np.ndarray, np.ndarray]:
        """The dataset and the positions of its fit and eval splits."""
        dataset = self.found[name]
        return dataset, dataset.indices(dataset.fit_split), dataset.indices(dataset.eval_split)

    def rows(
        self, metrics: dict[str, float], dataset: str, task: str, features: str, regime: float, seed: int
    ) -> list[Row]:
        return rows_for(metrics, self.label, dataset, task, features, regime, seed)

    def unusable_features(
        self, x: np.ndarray, dataset: str, task: str, kind: str, metric: str
    ) -> TaskOutput | None:
        """When some embeddings are NaN or infinite: a flag and a NaN `metric` instead of a score.

        A protocol fed NaN still returns a number (kNN votes for class 0: chance accuracy), which would
        read as a real, if poor, result; NaN in the table and a flag say what happened."""
        bad = int((~np.isfinite(x.reshape(len(x), -1))).any(axis=1).sum())
        if not bad:
            return None
        reason = f"{bad} of {len(x)} embeddings of {dataset} are not finite (NaN or inf): not evaluated"
        return TaskOutput(
            rows=self.rows({metric: math.nan}, dataset, task, kind, 1.0, 0),
            flags=[Flag(self.label, dataset, task, kind, reason)],
        )

    @property
    def fixed_channels(self) -> int | None:
        """The channel count a fixed-channel model (the standard ViT) takes, else None."""
        return getattr(self.loaded.model, "in_channels", None)

    def channel_subset_flags(self, name: str, task: str, kind: str) -> list[Flag]:
        """A flag on the rows of a fixed-channel model that saw only the first channels of `name`.

        The authors train their standard ViT on the first 3 channels of the images that have at
        least 3 (`IDRCell100K_3Channels`, src/data/custom_datasets.py lines 223-299 of
        github.com/nicoboou/chadavit); the bench feeds every dataset to it the same way, and says so."""
        fixed, dataset = self.fixed_channels, self.found[name]
        if fixed is None or dataset.n_channels <= fixed:
            return []
        seen = ", ".join(dataset.channel_names[:fixed])
        reason = (
            f"{self.label} takes {fixed}-channel images: it saw {seen} of the {dataset.n_channels} "
            f"channels of {name}"
        )
        return [Flag(self.label, name, task, kind, reason)]

    def usable_features(
        self, name: str, task: str, metric: str, output: TaskOutput
    ) -> Iterator[tuple[str, np.ndarray]]:
        """(kind, features) of each configured feature kind of dataset `name` that is finite; the
        others add their NaN `metric` row and flag to `output` (see `unusable_features`). A
        fixed-channel model skips a dataset with fewer channels and flags one with more."""
        fixed, channels = self.fixed_channels, self.found[name].n_channels
        if fixed is not None and channels < fixed:
            reason = f"{self.label} takes {fixed}-channel images; {name} has {channels}"
            output.skips.append(Skip(task, name, self.label, reason))
            return
        kinds: list[tuple[str, EmbedSetting | None]] = [(kind, None) for kind in self.config.features]
        if self.config.all_tokens:
            setting = EmbedSetting(
                img_size=self.config.img_size, prepare=self.config.image_prep, all_tokens=True
            )
            kinds.append((ALL_TOKENS, setting))
        for kind, setting in kinds:
            if kind == ALL_TOKENS and not self._all_tokens_fit(name, task, output):
                continue
            x = self.embeddings(name, setting).features(kind)
            unusable = self.unusable_features(x, name, task, kind, metric)
            if unusable is None:
                output.flags += self.channel_subset_flags(name, task, kind)
                yield kind, x
            else:
                output.add(unusable)

    def _all_tokens_fit(self, name: str, task: str, output: TaskOutput) -> bool:
        """Whether dataset `name`'s flattened patch tokens fit the limit; if not, a listed skip."""
        config = self.config
        size = all_tokens_bytes(
            self.loaded.model, self.found[name], config.img_size, config.device, self.fixed_channels
        )
        if size <= config.all_tokens_max_bytes:
            return True
        reason = (
            f"all_tokens: the flattened patch tokens of {name} take {size / 2**30:.1f} GiB, over the "
            f"{config.all_tokens_max_bytes / 2**30:.1f} GiB limit"
        )
        output.skips.append(Skip(task, name, self.label, reason))
        return False

    def flag(self, dataset: str, task: str, kind: str, reason: str | None) -> list[Flag]:
        return [] if reason is None else [Flag(self.label, dataset, task, kind, reason)]
