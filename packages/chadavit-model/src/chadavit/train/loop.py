"""DINO pretraining of a chadavit backbone: student, EMA teacher, multi-crop, DDP, checkpoints.

`train(config)` is the one entry point: it validates the data dir, then runs in this process (one
rank, or one of torchrun's ranks) or spawns `config.nproc` local ranks. Exact resume on CPU follows
from three choices: the loader is a pure function of (seed, epoch, rank, step), every step reseeds
torch's generator from (seed, step, rank) before drawing drop-path masks, and schedules are arrays
indexed by the global step. Library code reports through `TrainReporter`, never prints.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from chadavit.atomic import atomic_write_text
from chadavit.batch import ChannelBatch
from chadavit.data.loader import EpochPlan, ShardSet, make_epoch_loader, plan_epochs
from chadavit.models import create_model
from chadavit.seeding import derive_seed
from chadavit.ssl.dino_head import DINOHead
from chadavit.ssl.dino_loss import DINOLoss
from chadavit.ssl.ema import ema_update
from chadavit.ssl.schedules import cosine_schedule, linear_warmup_then_constant
from chadavit.train import checkpoint as ckpt
from chadavit.train.config import TrainConfig, dump_config
from chadavit.train.distributed import (
    DistContext,
    all_gather_int,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    init_distributed,
    launched_by_torchrun,
    shutdown_distributed,
    spawn_local,
)
from chadavit.train.metrics import MetricsWriter, StepMetrics, read_metrics

logger = logging.getLogger(__name__)

MODEL_DIR = "model"
CONFIG_FILE = "config.yaml"


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


class DINONetwork(nn.Module):
    """Backbone + DINO head over a list of views; views of one resolution run as one batch."""

    def __init__(self, backbone: nn.Module, head: DINOHead, padded: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.padded = padded

    def forward(self, views: Sequence[ChannelBatch]) -> list[Tensor]:
        embeddings = []
        start = 0
        while start < len(views):
            end = start
            while end < len(views) and views[end].image_size == views[start].image_size:
                end += 1
            group = views[start:end]
            merged = ChannelBatch(
                torch.cat([v.pixels for v in group]), torch.cat([v.channel_counts for v in group])
            )
            embeddings.append(self.backbone(merged, padded=self.padded))
            start = end
        logits = self.head(torch.cat(embeddings))
        return list(logits.chunk(len(views)))


def _param_groups(network: DINONetwork) -> list[dict[str, Any]]:
    """DINO's rule: no weight decay on biases and norms, nor on the backbone's embeddings."""
    no_decay_names = {f"backbone.{n}" for n in getattr(network.backbone, "no_weight_decay", set)()}
    decay, no_decay = [], []
    for name, param in network.named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith(".bias") or param.ndim == 1 or name in no_decay_names:
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "apply_wd": True}, {"params": no_decay, "apply_wd": False, "weight_decay": 0.0}]


@torch.no_grad()
def clip_per_parameter(parameters: Sequence[nn.Parameter], max_norm: float) -> None:
    """DINO's clipping: each parameter's gradient is scaled to norm <= max_norm on its own."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    norms = torch._foreach_norm(grads)
    for grad, norm in zip(grads, norms, strict=True):
        grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))


def weights_digest(*modules: nn.Module) -> int:
    """A 63-bit hash of every parameter's bytes: equal across ranks iff the weights are identical."""
    digest = hashlib.blake2b(digest_size=8)
    for module in modules:
        for param in module.parameters():
            digest.update(param.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return int.from_bytes(digest.digest(), "little") & ((1 << 63) - 1)


@dataclass(frozen=True)
class Schedules:
    lr: np.ndarray
    weight_decay: np.ndarray
    momentum: np.ndarray
    teacher_temp: np.ndarray

    @classmethod
    def build(cls, config: TrainConfig, steps_per_epoch: int, world_size: int) -> Schedules:
        optim, dino = config.optim, config.dino
        # Linear scaling rule (Goyal et al. 2017), as DINO: the base LR is for 256 images.
        peak = optim.base_lr * config.data.batch_size * world_size / 256.0
        return cls(
            lr=cosine_schedule(peak, optim.min_lr, config.epochs, steps_per_epoch, optim.warmup_epochs),
            weight_decay=cosine_schedule(
                optim.weight_decay, optim.weight_decay_end, config.epochs, steps_per_epoch
            ),
            momentum=cosine_schedule(
                dino.momentum_teacher, dino.momentum_teacher_end, config.epochs, steps_per_epoch
            ),
            teacher_temp=linear_warmup_then_constant(
                dino.warmup_teacher_temp,
                dino.teacher_temp,
                dino.warmup_teacher_temp_epochs,
                config.epochs,
                steps_per_epoch,
            ),
        )


def _precision(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    choice = config.precision
    if choice == "auto":
        choice = "bf16" if device.type == "cuda" else "fp32"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[choice]


def build_networks(config: TrainConfig) -> tuple[DINONetwork, DINONetwork]:
    """Student and teacher, identically initialised on every rank (seeded from config.seed)."""
    torch.manual_seed(derive_seed("init", config.seed))
    backbone = create_model(config.model, **dict(config.model_overrides))
    dino = config.dino
    head = DINOHead(
        backbone.embed_dim,
        dino.out_dim,
        dino.hidden_dim,
        dino.bottleneck_dim,
        dino.head_layers,
        dino.norm_last_layer,
    )
    student = DINONetwork(backbone, head, padded=config.padded)
    teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)
    teacher.eval()  # no drop path in the teacher (DINO builds it without)
    return student, teacher


def prepare_run_dir(config: TrainConfig) -> Path:
    """Create RUN/ and write the resolved config (atomically)."""
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / CONFIG_FILE, dump_config(config))
    return out


def train(config: TrainConfig, reporter: TrainReporter | None = None) -> TrainResult:
    """Run (or resume) a pretraining run; returns where the exported model is."""
    if not config.data_dir:
        raise ValueError("no data directory given; pass --data DIR (a folder with shards/*.tar)")
    if not config.out_dir:
        raise ValueError("no run directory given; pass --out RUN")
    shard_set = ShardSet.scan(config.data_dir)  # a missing or empty data dir fails here, once
    if config.nproc > 1 and launched_by_torchrun():
        raise ValueError(
            "--nproc starts its own workers; under torchrun leave it at 1 (torchrun sets the ranks)"
        )
    if config.nproc > 1:
        ckpt.resolve_resume(config.resume, config.out_dir)  # report a bad --resume before spawning
        spawn_local(config.nproc, run_rank, (config, shard_set, reporter))
    else:
        run_rank(config, shard_set, reporter)
    metrics = read_metrics(config.out_dir)
    return TrainResult(
        out_dir=Path(config.out_dir),
        model_dir=Path(config.out_dir) / MODEL_DIR,
        final_step=metrics[-1]["step"] + 1 if metrics else 0,
        last_loss=metrics[-1]["loss"] if metrics else None,
    )


def run_rank(config: TrainConfig, shard_set: ShardSet, reporter: TrainReporter | None) -> None:
    """One rank's whole run (the process group comes from the environment)."""
    context = init_distributed(config.device, config.dist_timeout_s)
    try:
        Trainer(config, shard_set, context, reporter).run()
    finally:
        shutdown_distributed()


class Trainer:
    """One rank of a run: networks, optimizer, schedules, loader plan; `run()` trains to the end."""

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

        student, teacher = build_networks(config)
        self.student = student.to(self.device)
        self.teacher = teacher.to(self.device)
        self.loss_fn = DINOLoss(
            config.dino.out_dim, config.dino.student_temp, config.dino.center_momentum, config.dino.centering
        ).to(self.device)
        self.optimizer = torch.optim.AdamW(_param_groups(self.student), lr=0.0, betas=config.optim.betas)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast_dtype == torch.float16)
        self.step = 0  # global step of the next training step
        self.skipped = 0  # unreadable samples seen by this rank in this run
        self.resumed = self._resume()
        if context.distributed:
            self.ddp: nn.Module = DistributedDataParallel(
                self.student, find_unused_parameters=config.find_unused_parameters
            )
        else:
            self.ddp = self.student

    # ----- state -------------------------------------------------------------------------------

    def _resume(self) -> bool:
        found = ckpt.resolve_resume(self.config.resume, self.config.out_dir)
        if found is None:
            return False
        state, path = found
        if state["model"] != self.config.model or dict(state["model_overrides"]) != dict(
            self.config.model_overrides
        ):
            raise ckpt.CheckpointError(
                f"checkpoint {path} holds {state['model']} {dict(state['model_overrides'])}, "
                f"not {self.config.model} {dict(self.config.model_overrides)}"
            )
        if int(state["steps_per_epoch"]) != self.steps_per_epoch:
            raise ckpt.CheckpointError(
                f"checkpoint {path} was written with {state['steps_per_epoch']} steps per epoch, "
                f"this run has {self.steps_per_epoch}; resume with the same data, batch size and ranks"
            )
        saved = state["config"]
        current = self.config.to_dict()
        changed = sorted(k for k in current if k not in ("resume", "epochs") and saved.get(k) != current[k])
        if changed and self.context.is_main:
            logger.warning(
                "resuming %s with changed settings %s: the run will not match an uninterrupted one",
                path,
                changed,
            )
        self.student.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.loss_fn.load_state_dict(state["loss"])
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
            "student": self.student.state_dict(),
            "teacher": self.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "step": self.step,
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "world_size": self.context.world_size,
            "skipped_samples": self.skipped,
            "rng": ckpt.rng_state(),
            "config": self.config.to_dict(),
        }

    def _save(self) -> None:
        if self.context.is_main:
            ckpt.save_checkpoint(self._checkpoint_state(), ckpt.checkpoint_dir(self.config.out_dir))

    # ----- one step ----------------------------------------------------------------------------

    def _autocast(self) -> Any:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def train_step(self, global_views: list[ChannelBatch], local_views: list[ChannelBatch]) -> Tensor:
        step, epoch = self.step, self.step // self.steps_per_epoch
        for group in self.optimizer.param_groups:
            group["lr"] = float(self.schedules.lr[step])
            if group["apply_wd"]:
                group["weight_decay"] = float(self.schedules.weight_decay[step])
        # Drop path draws from torch's global generator: reseeding per step makes a resumed step
        # draw what the uninterrupted run drew, on every rank differently.
        torch.manual_seed(derive_seed("step", self.config.seed, step, self.context.rank))
        with self._autocast():
            with torch.no_grad():
                teacher_out = self.teacher(global_views)  # the teacher sees global views only
            student_out = self.ddp(global_views + local_views)
            loss = self.loss_fn(student_out, teacher_out, float(self.schedules.teacher_temp[step]))
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"the DINO loss is {loss.item()} at step {step}; stopping this run")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        if self.config.optim.clip_grad > 0:
            clip_per_parameter(list(self.student.parameters()), self.config.optim.clip_grad)
        if epoch < self.config.dino.freeze_last_layer_epochs:
            # DINO keeps the prototypes fixed during the first epoch: it stabilises the start.
            for param in self.student.head.last_layer_parameters():
                param.grad = None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        ema_update(self.teacher, self.student, float(self.schedules.momentum[step]))
        return loss.detach()

    def _check_sync(self) -> bool:
        digests = all_gather_int(weights_digest(self.student, self.teacher), self.context)
        if len(set(digests)) != 1:
            raise RuntimeError(f"ranks hold different weights at step {self.step}: digests {digests}")
        return True

    # ----- the run -----------------------------------------------------------------------------

    def _plan(self, epoch: int, start_step: int) -> EpochPlan:
        max_channels = getattr(getattr(self.student.backbone, "config", None), "max_channels", None)
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
            teacher_momentum=float(schedules.momentum[step]),
            teacher_temp=float(schedules.teacher_temp[step]),
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
                raise RuntimeError(f"the loader returned step {batch.step} of epoch {epoch} out of order")
            self.skipped += batch.skipped
            batch = batch.with_views(config.augment, config.seed, epoch, self.context.rank, self.device)
            global_views = [b.to(self.device, non_blocking=on_gpu) for b in batch.global_batches()]
            local_views = [b.to(self.device, non_blocking=on_gpu) for b in batch.local_batches()]
            loss = self.train_step(global_views, local_views)
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

    def run(self) -> None:
        config, context = self.config, self.context
        writer = None
        if context.is_main:
            prepare_run_dir(config)
            writer = MetricsWriter(config.out_dir, resume_step=self.step)
        if self.reporter is not None:
            self.reporter.on_start(self.total_steps, self.step, self.steps_per_epoch)
        try:
            self.student.train()
            while self.step < self.total_steps:
                self._run_epoch(writer)
            if context.is_main:
                self.teacher.backbone.save_pretrained(Path(config.out_dir) / MODEL_DIR)
            barrier(context)
        finally:
            if writer is not None:
                writer.close()
            if self.reporter is not None:
                self.reporter.on_end()


def export_model(checkpoint: str | Path, out_dir: str | Path, network: str = "teacher") -> Path:
    """`chadavit-train export`: a checkpoint's backbone as a `from_pretrained` model directory."""
    return ckpt.export_checkpoint(checkpoint, out_dir, network)
