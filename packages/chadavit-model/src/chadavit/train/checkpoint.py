"""Training checkpoints: atomic writes, a previous good copy, truncation detected, export of the teacher.

`RUN/checkpoints/last.pt` is written to a temporary name in the same folder, flushed to disk, and
renamed over the old one after that one became `prev.pt`. Loading uses `weights_only=True` (plain
containers and tensors only, RNG states as uint8 tensors); a checkpoint that does not load or lacks
a field (a truncated file) is reported and `prev.pt` is used instead.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from chadavit.atomic import atomic_write
from chadavit.hub import load_error_reason
from chadavit.models import create_model
from chadavit.models.base import PackedViT

if TYPE_CHECKING:
    from chadavit.train.config import TrainConfig

logger = logging.getLogger(__name__)

FORMAT = "chadavit-train-checkpoint-v1"
LAST = "last.pt"
PREVIOUS = "prev.pt"
# What every checkpoint holds; an objective adds its own entries (DINO: "teacher", "loss").
REQUIRED_FIELDS = (
    "format", "model", "model_overrides", "student", "optimizer", "scaler",
    "step", "epoch", "step_in_epoch", "steps_per_epoch", "rng", "config",
)  # fmt: skip


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


def checkpoint_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def save_checkpoint(state: dict[str, Any], directory: Path) -> Path:
    """Write `state` as `directory/last.pt` atomically, keeping the previous one as `prev.pt`."""
    directory.mkdir(parents=True, exist_ok=True)
    last = directory / LAST

    def keep_previous() -> None:
        if last.exists():
            os.replace(last, directory / PREVIOUS)

    atomic_write(
        last,
        lambda temporary: torch.save({"format": FORMAT, **state}, temporary),
        before_replace=keep_previous,
    )
    _fsync_dir(directory)
    return last


def _fsync_dir(directory: Path) -> None:
    """Make the renames durable (POSIX); harmless where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load and validate one file; raises CheckpointError naming it when it is unusable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(
            f"checkpoint {path} cannot be read (truncated or not a checkpoint): {load_error_reason(error)}"
        ) from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a chadavit-train checkpoint")
    missing = [name for name in REQUIRED_FIELDS if name not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; it is incomplete")
    return state


def load_latest(directory: Path) -> tuple[dict[str, Any], Path] | None:
    """The newest usable checkpoint in `directory` (last.pt, else prev.pt with a warning), or None."""
    candidates = [directory / LAST, directory / PREVIOUS]
    present = [path for path in candidates if path.exists()]
    if not present:
        return None
    problems = []
    for path in present:
        try:
            state = read_checkpoint(path)
        except CheckpointError as error:
            logger.warning("%s; trying the previous checkpoint", error)
            problems.append(str(error))
            continue
        return state, path
    raise CheckpointError("no usable checkpoint in " + str(directory) + ": " + "; ".join(problems))


def resolve_resume(resume: str | None, out_dir: str | Path) -> tuple[dict[str, Any], Path] | None:
    """`None`: no resume (and no checkpoints may exist); `auto`: latest if any; else a file path."""
    directory = checkpoint_dir(out_dir)
    if resume is None:
        if (directory / LAST).exists() or (directory / PREVIOUS).exists():
            raise CheckpointError(
                f"{out_dir} already holds checkpoints; pass --resume auto to continue that run "
                "or choose another --out"
            )
        return None
    if resume == "auto":
        return load_latest(directory)
    path = Path(resume)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} {'is not a file' if path.exists() else 'does not exist'}")
    return read_checkpoint(path), path


def check_resumable(state: dict[str, Any], path: Path, config: TrainConfig, steps_per_epoch: int) -> None:
    """Refuse a checkpoint of another model or another epoch length (data, batch size, ranks)."""
    if state["model"] != config.model or dict(state["model_overrides"]) != dict(config.model_overrides):
        raise CheckpointError(
            f"checkpoint {path} holds {state['model']} {dict(state['model_overrides'])}, "
            f"not {config.model} {dict(config.model_overrides)}"
        )
    if int(state["steps_per_epoch"]) != steps_per_epoch:
        raise CheckpointError(
            f"checkpoint {path} was written with {state['steps_per_epoch']} steps per epoch, "
            f"this run has {steps_per_epoch}; resume with the same data, batch size and ranks"
        )
    saved = state["config"] if isinstance(state["config"], dict) else {}
    saved_objective = saved.get("objective", "dino")  # checkpoints from before objectives: DINO
    if saved_objective != config.objective:
        raise CheckpointError(
            f"checkpoint {path} was trained with objective {saved_objective}, not {config.objective}"
        )


def rng_state() -> dict[str, Any]:
    """The generators a training step draws from, as tensors (loadable with weights_only=True)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def backbone_from_state(
    model_name: str, overrides: dict[str, Any], network_state: dict[str, torch.Tensor]
) -> PackedViT:
    """Rebuild the backbone of a student or teacher state dict (keys `backbone.*`)."""
    prefix = "backbone."
    backbone_state = {k[len(prefix) :]: v for k, v in network_state.items() if k.startswith(prefix)}
    model = create_model(model_name, **overrides)
    model.load_state_dict(backbone_state, strict=True)
    return model.eval()


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, network: str = "teacher") -> Path:
    """Write the teacher (or student) backbone of a checkpoint as a `save_pretrained` model dir."""
    if network not in ("teacher", "student"):
        raise ValueError(f"network must be teacher or student, got {network!r}")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ValueError(f"{out_dir} exists and is not a folder; --out names the model folder to write")
    if not Path(checkpoint).is_file():
        what = "does not exist" if not Path(checkpoint).exists() else "is not a file"
        raise CheckpointError(f"checkpoint {checkpoint} {what}")
    state = read_checkpoint(Path(checkpoint))
    if not isinstance(state.get(network), dict):
        raise CheckpointError(f"checkpoint {checkpoint} holds no {network} network; try --network student")
    model = backbone_from_state(state["model"], dict(state["model_overrides"]), state[network])
    return model.save_pretrained(out_dir)
