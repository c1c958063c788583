"""`idrcell build`: every experiment's stage job, then the merge, resumable at any point."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from idrcell.dataset import ShardLimits, check_output_dir
from idrcell.executors import make_jobs, run_local
from idrcell.experiments import Experiment
from idrcell.merge import MergeResult, merge_stages
from idrcell.stage import ProgressCallback, StageConfig, StageResult


@dataclass(frozen=True)
class BuildResult:
    stages: list[StageResult]
    merge: MergeResult | None  # None when some stage did not finish

    @property
    def complete(self) -> bool:
        return self.merge is not None

    @property
    def nothing_to_do(self) -> bool:
        """True when OUT was already complete for these inputs: nothing was fetched or written."""
        return self.merge is not None and self.merge.already_done and all(s.already_done for s in self.stages)

    @property
    def unfinished(self) -> list[StageResult]:
        return [s for s in self.stages if not s.complete]


def build(
    experiments: Sequence[Experiment],
    experiments_path: Path,
    out: Path,
    config: StageConfig = StageConfig(),
    limits: ShardLimits = ShardLimits(),
    processes: int = 1,
    progress: ProgressCallback | None = None,
    merge_progress: Callable[[int, int], None] | None = None,
) -> BuildResult:
    """Stage every experiment (skipping finished ones), then merge if all of them finished."""
    out = Path(out)
    check_output_dir(out)  # before any job: a stage job would otherwise fail as if transiently
    jobs = make_jobs(experiments, experiments_path, out, config, processes)
    results = run_local(jobs, processes, progress)
    return merge_when_staged(results, experiments, out, config, limits, merge_progress)


def merge_when_staged(
    results: list[StageResult],
    experiments: Sequence[Experiment],
    out: Path,
    config: StageConfig,
    limits: ShardLimits,
    merge_progress: Callable[[int, int], None] | None = None,
) -> BuildResult:
    """The build's end, whatever staged it: merge only once every experiment staged completely."""
    if any(not result.complete for result in results):
        return BuildResult(results, None)
    merged = merge_stages(list(experiments), out, seed=config.seed, limits=limits, progress=merge_progress)
    return BuildResult(results, merged)
