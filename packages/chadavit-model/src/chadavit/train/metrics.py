"""Metrics of a run: one JSON line per logged step in `RUN/metrics.jsonl` and TensorBoard events.

On resume, lines and events after the checkpoint's step are dropped (they belong to steps that
will be run again), so each step appears once in the final logs. Lines are strict JSON: a value
that is not a finite number is an error, never a bare `NaN` in the file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chadavit.atomic import atomic_write_text

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


@dataclass(frozen=True)
class StepMetrics:
    """What one training step reports; `step` counts from 0 over the whole run."""

    step: int
    epoch: int
    step_in_epoch: int
    steps_per_epoch: int
    total_steps: int
    loss: float
    lr: float
    weight_decay: float
    objective: Mapping[str, float]  # the objective's own values (DINO: teacher_momentum, teacher_temp)
    images_per_s: float
    skipped_samples: int
    weights_in_sync: bool | None = None  # set on the steps where ranks were compared

    def record(self) -> dict[str, Any]:
        """The metrics.jsonl line: one flat mapping, the objective's values after weight_decay."""
        record: dict[str, Any] = {
            "step": self.step,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "loss": self.loss,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            **self.objective,
            "images_per_s": self.images_per_s,
            "skipped_samples": self.skipped_samples,
        }
        if self.weights_in_sync is not None:
            record["weights_in_sync"] = self.weights_in_sync
        return record


SCALARS = ("loss", "lr", "weight_decay", "images_per_s")  # TensorBoard: these and the objective's


def read_metrics(out_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(out_dir) / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricsWriter:
    """Appends metrics; `resume_step` drops what a previous attempt logged at or after it."""

    def __init__(self, out_dir: str | Path, resume_step: int = 0, tensorboard: bool = True) -> None:
        self.path = Path(out_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate(resume_step)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._tensorboard = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides events a killed attempt wrote past the checkpoint.
            self._tensorboard = SummaryWriter(
                str(Path(out_dir) / TENSORBOARD_DIR), purge_step=resume_step if resume_step else None
            )

    def _truncate(self, resume_step: int) -> None:
        if not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines() if line.strip()]
        kept = [line for line in kept if json.loads(line).get("step", -1) < resume_step]
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def write(self, metrics: StepMetrics) -> None:
        record = metrics.record()
        try:
            line = json.dumps(record, allow_nan=False)
        except ValueError as error:
            bad = sorted(k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v))
            raise ValueError(f"step {metrics.step}: metrics {bad} are not finite numbers") from error
        self._file.write(line + "\n")
        self._file.flush()
        if self._tensorboard is not None:
            for name in (*SCALARS, *metrics.objective):
                self._tensorboard.add_scalar(f"train/{name}", record[name], metrics.step)

    def close(self) -> None:
        self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
