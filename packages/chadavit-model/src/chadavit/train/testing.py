"""A tiny training configuration for tests, benchmarks and CPU demos (seconds per run, not hours).

The model and head are shrunk and the crops are small; the DINO settings that matter for a run of a
few dozen steps are changed too: no warm-ups, a constant teacher temperature and a slower center
(momentum 0.99), with which the loss of such a short run goes down instead of first rising.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chadavit.train.config import TrainConfig

TINY_MODEL = {"embed_dim": 32, "depth": 2, "num_heads": 2, "img_size": 64, "drop_path_rate": 0.1}
TINY_OVERRIDES: dict[str, Any] = {
    "data.batch_size": 8,
    "data.num_workers": 0,
    "data.steps_per_epoch": 6,
    "augment.global_crop_size": 64,
    "augment.local_crop_size": 32,
    "augment.n_local_crops": 2,
    "dino.out_dim": 256,
    "dino.hidden_dim": 64,
    "dino.bottleneck_dim": 32,
    "dino.warmup_teacher_temp_epochs": 0,
    "dino.teacher_temp": 0.04,
    "dino.center_momentum": 0.99,
    "optim.base_lr": 0.05,
    "optim.warmup_epochs": 0,
    "threads": 1,
    "save_every": 4,
}


def tiny_config(data_dir: str | Path, out_dir: str | Path, **overrides: Any) -> TrainConfig:
    """`TrainConfig` for a tiny chadavit run; `overrides` use dotted keys with `__` for dots."""
    config = TrainConfig(
        data_dir=str(data_dir), out_dir=str(out_dir), model="chadavit_petit", model_overrides=TINY_MODEL,
        epochs=3,
    )  # fmt: skip
    dotted = {key.replace("__", "."): value for key, value in overrides.items()}
    return config.with_overrides({**TINY_OVERRIDES, **dotted})


def tiny_cli_args(data_dir: str | Path, out_dir: str | Path, epochs: int = 3) -> list[str]:
    """The same run as `tiny_config` as `chadavit-train` arguments."""
    args = ["--data", str(data_dir), "--out", str(out_dir), "--model", "chadavit_petit"]
    args += ["--epochs", str(epochs)]
    for key, value in TINY_MODEL.items():
        args += ["--model-arg", f"{key}={value}"]
    for key, value in TINY_OVERRIDES.items():
        args += ["--set", f"{key}={value}"]
    return args


def rank_one_fails(timeout_s: float) -> None:
    """For `spawn_local` tests: rank 1 raises while rank 0 waits for it in a collective."""
    import torch.distributed as dist

    from chadavit.train.distributed import init_distributed, shutdown_distributed

    context = init_distributed("cpu", timeout_s)
    try:
        if context.rank == 1:
            raise RuntimeError("rank 1 failed on purpose")
        dist.barrier()  # never completes: rank 1 is gone
    finally:
        shutdown_distributed()


def sinkhorn_on_halves(timeout_s: float, logits_file: str, out_dir: str) -> None:
    """For `spawn_local` tests: each rank balances its half of a saved batch with Sinkhorn-Knopp."""
    import torch

    from chadavit.ssl.dino_loss import sinkhorn_knopp
    from chadavit.train.distributed import init_distributed, shutdown_distributed

    context = init_distributed("cpu", timeout_s)
    try:
        logits = torch.load(logits_file).chunk(context.world_size)[context.rank]
        torch.save(sinkhorn_knopp(logits, 0.04), f"{out_dir}/rank{context.rank}.pt")
    finally:
        shutdown_distributed()


def rank_one_drifts(prepared: Any, drift_after_step: int) -> None:
    """For `spawn_local` tests: a real run in which rank 1 nudges one teacher weight after a step.

    The teacher is outside DDP, so nothing re-synchronises it: only the sync check can notice.
    """
    import os

    import torch

    from chadavit.train import loop

    if int(os.environ["RANK"]) == 1:
        train_step = loop.Trainer.train_step

        def drifting(self: loop.Trainer, *args: Any, **kwargs: Any) -> Any:
            loss = train_step(self, *args, **kwargs)
            if self.step == drift_after_step:
                with torch.no_grad():
                    next(self.objective.weight_modules()[-1].parameters()).view(-1)[0] += 1e-3
            return loss

        loop.Trainer.train_step = drifting  # type: ignore[method-assign]
    loop.run_rank(prepared, None)
