"""Process groups: torchrun's environment, or N local workers spawned by `chadavit-train --nproc N`.

gloo on CPU, nccl on GPU. Every collective has a timeout, so a rank that dies cannot leave the
others waiting forever; with `--nproc`, the parent also watches its children and stops them all
as soon as one fails (torch.multiprocessing's `join` terminates the rest).
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def pick_device(requested: str, local_rank: int) -> torch.device:
    """`auto`: the local rank's GPU when CUDA is available, else the CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device cuda was asked for but no CUDA GPU is available; use --device cpu")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(requested)


def init_distributed(device: str, timeout_s: float) -> DistContext:
    """Join the process group described by the environment (torchrun's variables), if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    chosen = pick_device(device, local_rank)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if chosen.type == "cuda" else "gloo",
            init_method="env://",
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
            device_id=chosen if chosen.type == "cuda" else None,
        )
    return DistContext(rank, world_size, local_rank, local_world, chosen)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawned_entry(local_rank: int, nproc: int, port: int, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(
        {
            "RANK": str(local_rank),
            "LOCAL_RANK": str(local_rank),
            "WORLD_SIZE": str(nproc),
            "LOCAL_WORLD_SIZE": str(nproc),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    # A spawned process starts without the parent's logging set-up: give its warnings a rank prefix.
    logging.basicConfig(level=logging.INFO, format=f"[rank {local_rank}] %(levelname)s %(name)s: %(message)s")
    fn(*args)


def spawn_local(nproc: int, fn: Callable[..., Any], args: tuple) -> None:
    """Run `fn(*args)` in `nproc` fresh processes that form one process group on this machine.

    Raises `torch.multiprocessing.ProcessRaisedException` (with the failing rank's traceback) or
    `ProcessExitedException` when any rank fails; the other ranks are terminated first.
    """
    mp.start_processes(
        _spawned_entry, args=(nproc, free_port(), fn, args), nprocs=nproc, join=True, start_method="spawn"
    )


def all_reduce_mean(value: float, context: DistContext) -> float:
    """The mean of a Python number over ranks (the number itself when not distributed)."""
    if not context.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / context.world_size


def all_reduce_sum(value: int, context: DistContext) -> int:
    if not context.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=context.device)
    dist.all_reduce(tensor)
    return int(tensor.item())


def all_gather_int(value: int, context: DistContext) -> list[int]:
    if not context.distributed:
        return [value]
    tensor = torch.tensor([value], dtype=torch.int64, device=context.device)
    gathered = [torch.zeros_like(tensor) for _ in range(context.world_size)]
    dist.all_gather(gathered, tensor)
    return [int(t.item()) for t in gathered]


def barrier(context: DistContext) -> None:
    if context.distributed:
        dist.barrier()
