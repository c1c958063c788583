"""The training loop: any objective (`chadavit.ssl`), one rank or DDP, checkpoints, metrics, export.

`train(config)` is the one entry point: `preflight.prepare` checks everything a run needs (a
refusal there is a usage error and nothing is written), then the run goes in this process (one
rank, or one of torchrun's ranks) or in `config.nproc` spawned local ranks; any failure after
that is a `TrainingError` naming the rank and the step. What is trained (DINO's student and
teacher) is the objective's business (`chadavit.ssl.objective`); the loop owns the optimizer, the
learning-rate and weight-decay schedules, mixed precision, DDP, checkpoints and metrics.

Exact resume on CPU follows from three choices: the loader is a pure function of (seed, epoch,
rank, step), every step reseeds torch's generator from (seed, step, rank) before drawing
drop-path masks, and schedules are arrays indexed by the global step. Library code reports
through `TrainReporter`, never prints.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.multiprocessing.spawn import ProcessExitedException, ProcessRaisedException
from torch.nn.parallel import DistributedDataParallel

from chadavit.atomic import atomic_write_text
from chadavit.batch import ChannelBatch
from chadavit.data.channel_vocab import loader_normaliser
from chadavit.data.loader import EpochPlan, ShardSet, make_epoch_loader, plan_epochs
from chadavit.seeding import derive_seed
from chadavit.ssl.methods import build_objective
from chadavit.ssl.objective import Views
from chadavit.ssl.schedules import cosine_schedule
from chadavit.train import checkpoint as ckpt
from chadavit.train.config import TrainConfig, dump_config
from chadavit.train.distributed import (
    DistContext,
    all_gather_int,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    init_distributed,
    shutdown_distributed,
    spawn_local,
)
from chadavit.train.metrics import MetricsWriter, StepMetrics, read_metrics
from chadavit.train.preflight import PreparedRun, prepare

logger = logging.getLogger(__name__)

MODEL_DIR = "model"
CONFIG_FILE = "config.yaml"


class TrainingError(RuntimeError):
    """A run that started and failed; the message is one line naming the rank and the step."""


class TrainReporter(Protocol):
    """Progress callbacks, called on rank 0 only. Must be picklable for `nproc > 1`."""

    def on_start(self, total_steps: int, start_step: int, steps_per_epoch: int) -> None: ...
    def on_step(self, metrics: StepMetrics) -> None: ...
    def on_end(self) -> None: ...


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    model_dir: Path
    final_step: int  # global steps completed
    last_loss: float | None


PAUSE_AT_STEP_VARIABLE = "CHADAVIT_TEST_PAUSE_AT_STEP"  # read by Trainer._pause_if_a_test_asks


def weights_digest(*modules: nn.Module) -> int:
    """A 63-bit hash of every parameter's bytes: equal across ranks iff the weights are identical."""
    digest = hashlib.blake2b(digest_size=8)
    for module in modules:
        for param in module.parameters():
            digest.update(param.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return int.from_bytes(digest.digest(), "little") & ((1 << 63) - 1)


def all_finite(*modules: nn.Module) -> bool:
    return all(bool(torch.isfinite(param).all()) for module in modules for param in module.parameters())


@dataclass(frozen=True)
class Schedules:
    """The optimizer's per-step values; an objective keeps its own (DINO: teacher momentum, temperature)."""

    lr: np.ndarray
    weight_decay: np.ndarray

    @classmethod
    def build(cls, config: TrainConfig, steps_per_epoch: int, world_size: int) -> Schedules:
        optim = config.optim
        # Linear scaling rule (Goyal et al. 2017), as DINO: the base LR is for 256 images.
        peak = optim.base_lr * config.data.batch_size * world_size / 256.0
        return cls(
            lr=cosine_schedule(
                peak, optim.min_lr, config.epochs, steps_per_epoch, optim.warmup_epochs, optim.warmup_start_lr
            ),
            weight_decay=cosine_schedule(
                optim.weight_decay, optim.weight_decay_end, config.epochs, steps_per_epoch
            ),
        )


def _precision(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    choice = config.precision
    if choice == "auto":
        choice = "bf16" if device.type == "cuda" else "fp32"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[choice]


def prepare_run_dir(config: TrainConfig) -> Path:
    """Create RUN/ and write the resolved config (atomically)."""
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / CONFIG_FILE, dump_config(config))
    return out


def describe_failure(error: BaseException) -> str:
    """One line for a failed run: our own messages as they are, others with their type."""
    if isinstance(error, ProcessRaisedException):
        # The rank's traceback as text; its last line is "<module>.TrainingError: <our one line>".
        lines = [line for line in str(error).splitlines() if line.strip()]
        marker = f"{TrainingError.__name__}: "
        for line in reversed(lines):
            if marker in line:
                return line.split(marker, 1)[1]
        return f"rank {error.error_index} failed: {lines[-1] if lines else 'no message'}"
    if isinstance(error, ProcessExitedException):
        how = (
            f"was killed by signal {error.signal_name}"
            if error.signal_name
            else f"exited with {error.exit_code}"
        )
        return f"rank {error.error_index} {how}"
    text = " ".join(str(error).split()) or "no message"
    if isinstance(error, TrainingError | ValueError | FloatingPointError):
        return text
    return f"{type(error).__name__}: {text}"


def train(config: TrainConfig, reporter: TrainReporter | None = None) -> TrainResult:
    """Run (or resume) a training run; returns where the exported model is.

    Raises ValueError (ConfigError, DataError, CheckpointError) when the run cannot start, with
    nothing written, and TrainingError when it started and failed.
    """
    prepared = prepare(config)
    try:
        if config.nproc > 1:
            spawn_local(config.nproc, run_rank, (prepared, reporter))
        else:
            run_rank(prepared, reporter)
    except TrainingError:
        raise
    except Exception as error:
        raise TrainingError(describe_failure(error)) from error
    metrics = read_metrics(config.out_dir)
    return TrainResult(
        out_dir=Path(config.out_dir),
        model_dir=Path(config.out_dir) / MODEL_DIR,
        final_step=metrics[-1]["step"] + 1 if metrics else 0,
        last_loss=metrics[-1]["loss"] if metrics else None,
    )


def run_rank(prepared: PreparedRun, reporter: TrainReporter | None) -> None:
    """One rank's whole run (the process group comes from the environment)."""
    context = init_distributed(prepared.config.device, prepared.config.dist_timeout_s)
    trainer = None
    try:
        trainer = Trainer(prepared.config, prepared.shard_set, context, reporter)
        trainer.run()
    except Exception as error:
        # One line, so that a spawned rank's traceback ends with it (see describe_failure).
        where = [f"rank {context.rank}"] if context.distributed else []
        if trainer is not None and not isinstance(error, TrainingError):
            where.append(f"step {trainer.step}")
        prefix = f"{', '.join(where)}: " if where else ""
        raise TrainingError(prefix + describe_failure(error)) from error
    finally:
        shutdown_distributed()


class Trainer:
    """One rank of a run: objective, optimizer, schedules, loader plan; `run()` trains to the end."""

    def __init__(
        self, config: TrainConfig, shard_set: ShardSet, context: DistContext, reporter: TrainReporter | None
    ) -> None:
        self.config = config
        self.shard_set = shard_set
        self.context = context
        self.reporter = reporter if context.is_main else None
        self.device = context.device
        if self.device.type == "cpu":
            torch.set_num_threads(config.threads or max(1, (os.cpu_count() or 1) // context.local_world_size))
        self.steps_per_epoch, self.n_streams = plan_epochs(
            shard_set, config.data, context.rank, context.world_size
        )
        self.total_steps = config.epochs * self.steps_per_epoch
        self.schedules = Schedules.build(config, self.steps_per_epoch, context.world_size)
        self.autocast_dtype = _precision(config, self.device)
        where = config.data.augment_on
        self.augment_on_device = where == "device" or (where == "auto" and self.device.type == "cuda")

        self.objective = build_objective(config, self.steps_per_epoch).to(self.device)
        self.optimizer = torch.optim.AdamW(self.objective.param_groups(), lr=0.0, betas=config.optim.betas)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast_dtype == torch.float16)
        self.step = 0  # global step of the next training step
        self.skipped = 0  # unreadable samples seen by this rank in this run
        self.resumed = self._resume()
        if context.distributed:
            self.objective.use_forward(
                DistributedDataParallel(
                    self.objective.network, find_unused_parameters=config.find_unused_parameters
                )
            )

    # ----- state -------------------------------------------------------------------------------

    def _resume(self) -> bool:
        found = ckpt.resolve_resume(self.config.resume, self.config.out_dir)
        if found is None:
            return False
        state, path = found
        ckpt.check_resumable(state, path, self.config, self.steps_per_epoch)
        saved = state["config"]
        current = self.config.to_dict()
        changed = sorted(
            k for k in current if k not in ("resume", "epochs") and k in saved and saved[k] != current[k]
        )
        if changed and self.context.is_main:
            logger.warning(
                "resuming %s with changed settings %s: the run will not match an uninterrupted one",
                path,
                changed,
            )
        self.objective.load_state_dict(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.skipped = int(state.get("skipped_samples", 0)) if self.context.is_main else 0
        if self.context.is_main:
            logger.info("resumed from %s at step %d", path, self.step)
        return True

    def _checkpoint_state(self) -> dict[str, Any]:
        epoch, step_in_epoch = divmod(self.step, self.steps_per_epoch)
        return {
            "model": self.config.model,
            "model_overrides": dict(self.config.model_overrides),
            **self.objective.state_dict(),  # DINO: student, teacher, loss (its center)
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "world_size": self.context.world_size,
            "skipped_samples": self.skipped,
            "rng": ckpt.rng_state(),
            "config": self.config.to_dict(),
        }

    def _check_weights_finite(self) -> None:
        """Nothing non-finite is ever saved: a NaN reached through the update stops the run here."""
        if not all_finite(*self.objective.weight_modules()):
            raise TrainingError(
                f"the weights hold NaN or infinite values after step {self.step - 1}; "
                "stopped without writing a checkpoint or a model"
            )

    def _save(self) -> None:
        if self.context.is_main:
            self._check_weights_finite()
            ckpt.save_checkpoint(self._checkpoint_state(), ckpt.checkpoint_dir(self.config.out_dir))

    # ----- one step ----------------------------------------------------------------------------

    def _autocast(self) -> Any:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def train_step(
        self, global_views: list[ChannelBatch], local_views: list[ChannelBatch], keys: tuple[str, ...] = ()
    ) -> Tensor:
        step = self.step
        for group in self.optimizer.param_groups:
            group["lr"] = float(self.schedules.lr[step])
            if group["apply_wd"]:
                group["weight_decay"] = float(self.schedules.weight_decay[step])
        # Drop path draws from torch's global generator: reseeding per step makes a resumed step
        # draw what the uninterrupted run drew, on every rank differently.
        torch.manual_seed(derive_seed("step", self.config.seed, step, self.context.rank))
        with self._autocast():
            loss = self.objective.loss(Views(global_views, local_views, keys), step)
        if not math.isfinite(loss.item()):
            raise TrainingError(
                f"the loss is {loss.item()} at step {step} (epoch {step // self.steps_per_epoch}); "
                "stopped before updating the weights"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        self.objective.adjust_gradients(step)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.objective.after_step(step)
        return loss.detach()

    def _check_sync(self) -> bool:
        digests = all_gather_int(weights_digest(*self.objective.weight_modules()), self.context)
        if len(set(digests)) != 1:
            raise TrainingError(f"ranks hold different weights at step {self.step}: digests {digests}")
        return True

    # ----- the run -----------------------------------------------------------------------------

    def _plan(self, epoch: int, start_step: int) -> EpochPlan:
        max_channels = getattr(getattr(self.objective.backbone, "config", None), "max_channels", None)
        return EpochPlan(
            shard_set=self.shard_set,
            data=self.config.data,
            augment=self.config.augment,
            seed=self.config.seed,
            epoch=epoch,
            rank=self.context.rank,
            world_size=self.context.world_size,
            steps=self.steps_per_epoch,
            n_streams=self.n_streams,
            max_channels=max_channels,
            start_step=start_step,
            output="images" if self.augment_on_device else "views",
            channel_normaliser=loader_normaliser(
                self.config, getattr(self.objective.backbone, "uses_names", False)
            ),
        )

    def _log(self, step: int, loss: Tensor, in_sync: bool | None, seconds: float) -> StepMetrics:
        """Metrics of one step, reduced over ranks (every rank calls this on the same steps)."""
        context, schedules = self.context, self.schedules
        return StepMetrics(
            step=step,
            epoch=step // self.steps_per_epoch,
            step_in_epoch=step % self.steps_per_epoch,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            loss=all_reduce_mean(float(loss.item()), context),
            lr=float(schedules.lr[step]),
            weight_decay=float(schedules.weight_decay[step]),
            objective=self.objective.step_metrics(step),
            images_per_s=self.config.data.batch_size * context.world_size * self.config.log_every / seconds,
            skipped_samples=all_reduce_sum(self.skipped, context),
            weights_in_sync=in_sync,
        )

    def _run_epoch(self, writer: MetricsWriter | None) -> None:
        config = self.config
        epoch, start_in_epoch = divmod(self.step, self.steps_per_epoch)
        on_gpu = self.device.type == "cuda"
        loader = make_epoch_loader(self._plan(epoch, start_in_epoch), pin_memory=on_gpu)
        tick = time.perf_counter()
        for batch in loader:
            if batch.step != self.step % self.steps_per_epoch:
                raise TrainingError(f"the loader returned step {batch.step} of epoch {epoch} out of order")
            self.skipped += batch.skipped
            batch = batch.with_views(config.augment, config.seed, epoch, self.context.rank, self.device)
            global_views = [b.to(self.device, non_blocking=on_gpu) for b in batch.global_batches()]
            local_views = [b.to(self.device, non_blocking=on_gpu) for b in batch.local_batches()]
            loss = self.train_step(global_views, local_views, tuple(batch.keys))
            step = self.step
            self.step += 1
            in_sync = None
            if config.sync_check_every and self.step % config.sync_check_every == 0:
                in_sync = self._check_sync()
            if self.step % config.log_every == 0:
                now = time.perf_counter()
                metrics = self._log(step, loss, in_sync, max(now - tick, 1e-9))
                tick = now
                if writer is not None:
                    writer.write(metrics)
                if self.reporter is not None:
                    self.reporter.on_step(metrics)
            if self.step % config.save_every == 0 or self.step % self.steps_per_epoch == 0:
                self._save()
            self._pause_if_a_test_asks()

    def _pause_if_a_test_asks(self) -> None:
        """Tests only: park this rank for good at the step `CHADAVIT_TEST_PAUSE_AT_STEP` names.

        The step's metrics and checkpoint are on disk by then; the rank writes `RUN/paused-rank<r>`
        and sleeps, so a kill test's SIGKILL lands at that step on a fast or a loaded machine alike.
        """
        pause_at = os.environ.get(PAUSE_AT_STEP_VARIABLE)
        if pause_at is None or int(pause_at) != self.step:
            return
        (Path(self.config.out_dir) / f"paused-rank{self.context.rank}").write_text(f"{self.step}\n")
        while True:
            time.sleep(60)

    def run(self) -> None:
        config, context = self.config, self.context
        writer = None
        if context.is_main:
            prepare_run_dir(config)
            writer = MetricsWriter(config.out_dir, resume_step=self.step)
        if self.reporter is not None:
            self.reporter.on_start(self.total_steps, self.step, self.steps_per_epoch)
        try:
            self.objective.network.train()
            while self.step < self.total_steps:
                self._run_epoch(writer)
            if context.is_main:
                self._check_weights_finite()
                self.objective.export_backbone().save_pretrained(Path(config.out_dir) / MODEL_DIR)
            barrier(context)
        finally:
            if writer is not None:
                writer.close()
            if self.reporter is not None:
                self.reporter.on_end()


def export_model(checkpoint: str | Path, out_dir: str | Path, network: str = "teacher") -> Path:
    """`chadavit-train export`: a checkpoint's backbone as a `from_pretrained` model directory."""
    return ckpt.export_checkpoint(checkpoint, out_dir, network)
