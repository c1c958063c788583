"""Padded reference path vs padding-free path of ChAda-ViT, same weights, same process.

For each channel-count mix ("idrcell": 1..5 channels, mean 3, like the released IDRCell100k;
"wide": 1..10) it draws a batch of 64 images with a fixed seed, every count of the mix equally
often, and times a training step (forward + backward) and inference on both paths. It prints
images/s and their ratio, the analytic FLOPs per image of both paths, and the achieved GFLOP/s of
each path as a fraction of a dense matmul measured in the same run (fp32 on CPU; the autocast dtype on CUDA).

On CUDA it runs unchanged in bf16 autocast: the padding-free path has no mask, so SDPA may use
its flash / memory-efficient kernels; peak memory comes from torch.cuda.max_memory_allocated.

    python benchmarks/bench_model.py                 # the full measurement (about 10 min on one CPU core)
    python benchmarks/bench_model.py --batch-size 8  # a quick look
    python benchmarks/bench_model.py --threads 0     # torch's default thread count
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import functools
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from chadavit import ChannelBatch, create_model
from chadavit.models.flops import forward_flops

MIXES = {"idrcell": (1, 5), "wide": (1, 10)}  # inclusive channel-count ranges


@dataclass
class Timing:
    wall: float  # seconds on the clock
    busy: float  # CPU: this process's CPU seconds (immune to other processes); CUDA: wall seconds
    peak_bytes: int | None


def keep_freed_memory() -> bool:
    """Stop glibc from returning big freed blocks to the OS (and page-faulting them back in).

    Activations above glibc's 32 MB mmap ceiling are otherwise mmapped and unmapped on every
    step. The same setting holds for both paths; `--no-allocator-tuning` shows the difference.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt"):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**30))


def draw_batch(mix: str, size: int, image_px: int, seed: int) -> ChannelBatch:
    """Every channel count of the mix equally often (so "idrcell" has mean 3), shuffled by the seed."""
    low, high = MIXES[mix]
    generator = torch.Generator().manual_seed(seed)
    span = high - low + 1
    balanced = torch.arange(size) % span + low
    counts = balanced[torch.randperm(size, generator=generator)].tolist()
    return ChannelBatch.from_images([torch.rand(c, image_px, image_px, generator=generator) for c in counts])


def micro_batches(batch: ChannelBatch, size: int) -> list[ChannelBatch]:
    images = batch.images()
    return [ChannelBatch.from_images(images[i : i + size]) for i in range(0, len(images), size)]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], None], device: torch.device) -> Timing:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    synchronize(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return Timing(wall=wall, busy=wall if device.type == "cuda" else cpu, peak_bytes=peak)


def matmul_gflops(device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 8) -> float:
    """Dense square matmul throughput per busy second: the yardstick of the run."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b

    def multiply() -> None:
        for _ in range(repeats):
            a @ b

    return repeats * 2 * size**3 / timed(multiply, device).busy / 1e9


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(model: torch.nn.Module, parts: list[ChannelBatch], padded: bool, device: torch.device) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    total = sum(len(p) for p in parts)
    for part in parts:
        with autocast(device):
            embedding = model(part.to(device, non_blocking=True), padded=padded)
            # Any loss that reaches every CLS (a plain sum is flat after the final LayerNorm).
            loss = embedding.float().pow(2).sum() / total
        loss.backward()


def inference(model: torch.nn.Module, parts: list[ChannelBatch], padded: bool, device: torch.device) -> None:
    model.eval()
    with torch.inference_mode(), autocast(device):
        for part in parts:
            model(part.to(device, non_blocking=True), padded=padded)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="chadavit_moyen")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--micro-batch",
        type=int,
        default=None,
        help="images per forward (default 16 on CPU, the batch on CUDA)",
    )
    parser.add_argument("--mixes", default="idrcell,wide")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=1, help="timed repetitions; the median is reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared 2-core machine a preempted second OpenMP thread "
        "stalls every parallel region, which drowns the comparison in noise; 0 keeps torch's choice)",
    )
    parser.add_argument("--no-allocator-tuning", action="store_true")
    args = parser.parse_args()
    if args.threads > 0 and args.device == "cpu":
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    compute_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    micro = args.micro_batch or (args.batch_size if device.type == "cuda" else 16)
    tuned = False if args.no_allocator_tuning or device.type == "cuda" else keep_freed_memory()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False

    torch.manual_seed(args.seed)
    model = create_model(args.model).to(device)
    config = model.config
    print(
        f"model {config.name} (D {config.embed_dim}, depth {config.depth}, heads {config.num_heads}, "
        f"N_max {config.max_channels}); device {device}"
        + (
            f" ({torch.cuda.get_device_name(device)})"
            if device.type == "cuda"
            else f", {torch.get_num_threads()} threads"
        )
        + f"; compute {str(compute_dtype).removeprefix('torch.')}"
        + f"; batch {args.batch_size} in micro-batches of {micro}"
        + f"; glibc keeps freed memory: {tuned}"
    )
    reference = [matmul_gflops(device, compute_dtype)]
    print(f"dense {str(compute_dtype).removeprefix('torch.')} matmul 2048^3: {reference[0]:.1f} GFLOP/s")

    rows = []
    for mix in args.mixes.split(","):
        batch = draw_batch(mix, args.batch_size, args.image_size, args.seed)
        counts = batch.counts_list()
        parts = micro_batches(batch, micro)
        warm = micro_batches(draw_batch(mix, min(4, args.batch_size), args.image_size, args.seed + 1), micro)
        size = args.image_size
        flops = {padded: forward_flops(config, counts, size, size, padded=padded) for padded in (False, True)}
        for mode, run, factor in (("train", train_step, 3), ("infer", inference, 1)):
            result: dict[bool, Timing] = {}
            for padded in (False, True):
                run(model, warm, padded, device)  # kernels, allocator and autotuning warm
                step = functools.partial(run, model, parts, padded, device)
                timings = [timed(step, device) for _ in range(args.repeats)]
                peaks = [t.peak_bytes for t in timings if t.peak_bytes is not None]
                result[padded] = Timing(
                    wall=statistics.median(t.wall for t in timings),
                    busy=statistics.median(t.busy for t in timings),
                    peak_bytes=max(peaks) if peaks else None,
                )
                reference.append(matmul_gflops(device, compute_dtype))
            rows.append((mix, mode, counts, flops, factor, result))
            free, padded_run = result[False], result[True]
            print(
                f"  {mix:8s} {mode}: padding-free {len(counts) / free.wall:7.2f} img/s, "
                f"padded {len(counts) / padded_run.wall:7.2f} img/s, ratio {padded_run.wall / free.wall:.2f}x"
            )

    yardstick = statistics.median(reference)
    busy = "CPU second of this process" if device.type == "cpu" else "second"
    print(f"\nmatmul yardstick: {yardstick:.1f} GFLOP per {busy} (median of {len(reference)} in this run)")
    # Other processes slow short, barrier-heavy kernels more than one long matmul; CPU time
    # (the 'busy' columns) does not count the time they take, wall-clock time (img/s) does.
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average at the end (1, 5, 15 min): {load}\n")
    header = (
        f"{'mix':8s} {'mean C':>6s} {'step':5s} {'free img/s':>10s} {'pad img/s':>9s} {'ratio':>6s} "
        f"{'busy ratio':>10s} {'FLOP ratio':>10s} {'GFLOP/img free':>14s} {'GFLOP/img pad':>13s} "
        f"{'free GFLOP/busy s':>17s} {'free %mm':>8s} {'pad %mm':>7s}"
    )
    if device.type == "cuda":
        header += f" {'free peak GiB':>13s} {'pad peak GiB':>12s}"
    print(header)
    for mix, mode, counts, flops, factor, result in rows:
        n = len(counts)
        free, pad = result[False], result[True]
        free_rate = factor * flops[False] / free.busy / 1e9
        pad_rate = factor * flops[True] / pad.busy / 1e9
        line = (
            f"{mix:8s} {sum(counts) / n:6.2f} {mode:5s} {n / free.wall:10.2f} {n / pad.wall:9.2f} "
            f"{pad.wall / free.wall:5.2f}x {pad.busy / free.busy:9.2f}x {flops[True] / flops[False]:9.2f}x "
            f"{factor * flops[False] / n / 1e9:14.1f} {factor * flops[True] / n / 1e9:13.1f} "
            f"{free_rate:17.1f} {free_rate / yardstick:8.0%} {pad_rate / yardstick:7.0%}"
        )
        if device.type == "cuda":
            line += f" {free.peak_bytes / 2**30:13.2f} {pad.peak_bytes / 2**30:12.2f}"
        print(line)
    print(
        "\nGFLOP/img counts a training step as 3x the forward (matmul FLOPs, chadavit.models.flops); "
        "%mm = GFLOP per busy second / the matmul yardstick."
    )


if __name__ == "__main__":
    main()
