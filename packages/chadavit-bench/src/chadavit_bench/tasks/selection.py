"""Which datasets a task runs on: each of a kind, several together, or the first few present."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from chadavit_bench.datasets.base import DownstreamDataset, TaskKind
from chadavit_bench.tasks.base import Job, Skip


class DatasetChoice(Protocol):
    def plan(
        self, task: str, found: Mapping[str, DownstreamDataset], missing: Mapping[str, str], limit: int
    ) -> tuple[list[Job], list[Skip]]:
        """The task's jobs on the datasets found and, for those it expects but cannot use, the skips.

        `limit` caps how many datasets a choice that takes "any" may use (`BenchConfig`)."""
        ...


@dataclass(frozen=True)
class EachOfKind:
    """One job per dataset of `kind` (the public ones and manifests); `expected` are named when absent."""

    kind: TaskKind
    expected: tuple[str, ...] = ()

    def plan(self, task, found, missing, limit):
        jobs = [Job(task, (name,)) for name, dataset in found.items() if dataset.kind == self.kind]
        skips = [Skip(task, name, "*", missing[name]) for name in self.expected if name in missing]
        return jobs, skips


@dataclass(frozen=True)
class Together:
    """One job over all of `names` (e.g. a joint embedding), skipped when one of them is absent."""

    names: tuple[str, ...]

    def plan(self, task, found, missing, limit):
        absent = [name for name in self.names if name not in found]
        if not absent:
            return [Job(task, self.names)], []
        reason = "; ".join(missing.get(name, f"{name} not requested") for name in absent)
        return [], [Skip(task, "+".join(self.names), "*", reason)]


@dataclass(frozen=True)
class FirstPresent:
    """One job over the first `limit` datasets found, whatever their kind (e.g. attention figures)."""

    def plan(self, task, found, missing, limit):
        names = tuple(list(found)[:limit])
        if names:
            return [Job(task, names)], []
        return [], [Skip(task, "*", "*", "no dataset is present")]
