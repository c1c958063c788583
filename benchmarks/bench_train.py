"""Is the loader the bottleneck of DINO pretraining? And what does the padding-free path buy in training?

In one run, on shards written on the fly (224 x 224 PNG channels, 1..5 channels uniform: mean 3,
like IDRCell100k):
1. loader samples/s per worker: one loader stream in this process on one thread, exactly what a
   DataLoader worker runs (the webdataset pipeline: tar read, PNG decode, channel-count buckets,
   DINO multi-crop at the paper's sizes: 2 x 224 + 8 x 96), in CPU time, in steady state;
2. training images/s of a full DINO step (teacher and student forwards, backward, AdamW, EMA; the
   paper's head with 65,536 prototypes) for chadavit_petit and chadavit_moyen, padding-free, and
   for chadavit_moyen padded (every image padded to 10 channel slots, the reference path);
3. loader workers per training process = training images/s / loader samples/s per worker, here,
   and for a GPU, from the step's analytic FLOPs at an assumed fraction of the GPU's peak;
4. what batches of mixed channel counts (the authors' loader, `data.group_by_channels=false`) cost
   the padding-free model against one-count batches (the default): the same images, once as one
   batch per count and once shuffled into mixed batches, timed in alternating rounds of one run.

    python benchmarks/bench_train.py               # about 4 min on 2 idle CPU cores
    python benchmarks/bench_train.py --quick       # one timed step per model instead of two
    python benchmarks/bench_train.py --batch-mix-only   # item 4 alone
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from chadavit.batch import ChannelBatch
from chadavit.data.augment import AugmentConfig, multi_crop
from chadavit.data.loader import (
    DataConfig,
    EpochPlan,
    MultiCropBatch,
    ShardSet,
    make_epoch_loader,
    plan_epochs,
)
from chadavit.data.testing import synthetic_image, write_shards
from chadavit.models.flops import forward_flops
from chadavit.models.registry import model_config
from chadavit.train.config import TrainConfig
from chadavit.train.distributed import DistContext
from chadavit.train.loop import Trainer

CHANNEL_MIX = (1, 2, 3, 4, 5)
# GPU assumption for the "GPU-equivalent" line: A100 bf16 dense peak (NVIDIA A100 datasheet: 312
# TFLOP/s) at 35% model FLOP utilisation, a typical figure for small ViTs under DINO.
GPU_PEAK_FLOPS = 312e12
GPU_UTILISATION = 0.35
LOADER_STEPS = 21  # batches of 8 per loader measurement: the first untimed, then one pass


def loader_rate(shard_set: ShardSet, batch_size: int, steps: int, output: str) -> float:
    """Samples/s of one loader stream on one thread (a DataLoader worker's work).

    output "views": the worker makes the multi-crop views; "images": it only reads and decodes
    (`data.augment_on=device`, the default on GPU, where the views are made by the training GPU).
    No shuffle buffer: the samples timed are then the same whatever the code (here one
    pass over the 160 samples), while a shuffle would pick different ones whose cost differs by more
    than loaders do (the buffer itself costs under a microsecond per sample). Timed in steady state,
    from the first batch on.
    """
    data = DataConfig(batch_size=batch_size, num_workers=0, shuffle_buffer=0, steps_per_epoch=steps)
    plan = EpochPlan(shard_set, data, AugmentConfig(), 0, 0, 0, 1, steps, 1, 10, output=output)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # DataLoader workers run single-threaded
    try:
        batches = iter(make_epoch_loader(plan))
        next(batches)  # the first batch pays the start-up (the stream's shard plan), once per epoch
        # CPU time, not wall time: what a worker does with a core of its own, even on a loaded machine.
        started = time.process_time()
        count = sum(len(batch) for batch in batches)
        return count / (time.process_time() - started)
    finally:
        torch.set_num_threads(previous)


def views_for_training(shard_set: ShardSet, batch_size: int, count: int) -> list[MultiCropBatch]:
    data = DataConfig(batch_size=batch_size, num_workers=0, shuffle_buffer=16, steps_per_epoch=count)
    steps, streams = plan_epochs(shard_set, data, 0, 1)
    return list(
        make_epoch_loader(EpochPlan(shard_set, data, AugmentConfig(), 1, 0, 0, 1, steps, streams, 10))
    )


def step_flops_per_image(model: str, padded: bool) -> float:
    """Analytic FLOPs of one DINO step per image: teacher forward on 2 global views, student forward
    and backward (3x forward) on 2 global + 8 local views, for the channel mix above."""
    config = model_config(model)
    per_image = []
    for channels in CHANNEL_MIX:
        global_fwd = forward_flops(config, [channels], 224, 224, padded)
        local_fwd = forward_flops(config, [channels], 96, 96, padded)
        per_image.append(2 * global_fwd + 3 * (2 * global_fwd + 8 * local_fwd))
    return sum(per_image) / len(per_image)


def training_rate(
    data_dir: Path, model: str, padded: bool, batches: list[MultiCropBatch], warmup: int
) -> float:
    """Images/s of full DINO steps on prepared views (loader excluded)."""
    with tempfile.TemporaryDirectory() as run:
        config = TrainConfig(
            data_dir=str(data_dir), out_dir=run, model=model, epochs=1, padded=padded,
            data=DataConfig(batch_size=len(batches[0]), num_workers=0, steps_per_epoch=len(batches)),
        )  # fmt: skip
        context = DistContext(0, 1, 0, 1, torch.device("cpu"))
        trainer = Trainer(config, ShardSet.scan(data_dir), context, reporter=None)
        trainer.objective.network.train()
        images, seconds = 0, 0.0
        for index, batch in enumerate(batches):
            started = time.perf_counter()
            trainer.train_step(batch.global_batches(), batch.local_batches())
            trainer.step += 1
            if index >= warmup:
                seconds += time.perf_counter() - started
                images += len(batch)
        return images / seconds


def batch_mix_rates(model: str, per_count: int, rounds: int, global_size: int, local_size: int) -> dict:
    """Images/s of DINO steps on the same images as one-count batches and as mixed batches.

    `per_count` images of each count 1..5: grouped = one batch per count; mixed = the same images
    shuffled into batches of the same size. Rounds alternate the order (grouped first, then mixed
    first) so a machine whose speed drifts favours neither; each rate is the median round."""
    rng = np.random.default_rng(0)
    images = {
        c: [torch.from_numpy(synthetic_image(rng, c, 224)) for _ in range(per_count)] for c in CHANNEL_MIX
    }
    pool = [image for count in CHANNEL_MIX for image in images[count]]
    order = np.random.default_rng(1).permutation(len(pool)).tolist()
    layouts = {
        "grouped": [images[count] for count in CHANNEL_MIX],
        "mixed": [[pool[i] for i in order[s : s + per_count]] for s in range(0, len(pool), per_count)],
    }
    augment = AugmentConfig(global_crop_size=global_size, local_crop_size=local_size)
    steps = {}
    for name, batches in layouts.items():
        steps[name] = []
        for index, batch in enumerate(batches):
            views = multi_crop(batch, torch.Generator().manual_seed(index), augment)
            steps[name].append(
                (
                    [ChannelBatch(v, views.channel_counts) for v in views.global_views],
                    [ChannelBatch(v, views.channel_counts) for v in views.local_views],
                )
            )
    with tempfile.TemporaryDirectory() as run:
        data_dir = Path(run) / "data"
        write_shards(
            data_dir, [8], image_size=32
        )  # the trainer needs a dataset; the steps use the views above
        config = TrainConfig(
            data_dir=str(data_dir), out_dir=str(Path(run) / "run"), model=model, epochs=1,
            data=DataConfig(batch_size=per_count, num_workers=0, steps_per_epoch=10_000),
        )  # fmt: skip
        trainer = Trainer(config, ShardSet.scan(data_dir), DistContext(0, 1, 0, 1, torch.device("cpu")), None)
        trainer.objective.network.train()
        trainer.train_step(*steps["grouped"][0])  # warm-up: allocations, first-call costs
        seconds: dict[str, list[float]] = {"grouped": [], "mixed": []}
        for round_ in range(rounds):
            for name in ("grouped", "mixed") if round_ % 2 == 0 else ("mixed", "grouped"):
                started = time.perf_counter()
                for global_views, local_views in steps[name]:
                    trainer.train_step(global_views, local_views)
                seconds[name].append(time.perf_counter() - started)
    return {name: len(pool) / statistics.median(values) for name, values in seconds.items()}


def report_batch_mix(model: str, per_count: int, rounds: int, global_size: int, local_size: int) -> None:
    rates = batch_mix_rates(model, per_count, rounds, global_size, local_size)
    print(
        f"batch mix, {model} padding-free, {5 * per_count} images ({per_count} of each count 1-5) in "
        f"batches of {per_count}, crops 2 x {global_size} + 8 x {local_size}, {rounds} alternating rounds:"
    )
    ratio = rates["mixed"] / rates["grouped"]
    print(
        f"  one count per batch {rates['grouped']:.2f} images/s, mixed counts {rates['mixed']:.2f} images/s: "
        f"mixed / grouped {ratio:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one timed step per model instead of two")
    parser.add_argument("--batch-size", type=int, default=None, help="training images per step (default 2)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (default 2, quick 1)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch threads for the training steps (default 1: on shared cores OpenMP threads thrash)",
    )  # fmt: skip
    parser.add_argument("--batch-mix-only", action="store_true", help="only item 4: mixed vs grouped batches")
    parser.add_argument(
        "--mix-model", default="chadavit_petit", help="model of item 4 (default chadavit_petit)"
    )
    parser.add_argument("--mix-per-count", type=int, default=4, help="item 4: images of each channel count")
    parser.add_argument("--mix-rounds", type=int, default=3, help="item 4: alternating timed rounds")
    parser.add_argument(
        "--mix-crops", type=int, nargs=2, default=(96, 48), metavar=("GLOBAL", "LOCAL"),
        help="item 4: crop sizes (default 96 48 on a CPU; the paper's are 224 96)",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mix = (args.mix_model, args.mix_per_count, args.mix_rounds, *args.mix_crops)
    if args.batch_mix_only:
        report_batch_mix(*mix)
        return
    batch = args.batch_size or 2
    steps = args.steps or (1 if args.quick else 2)
    threads = torch.get_num_threads()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        write_shards(data_dir, [40, 40, 40, 40], channel_counts=CHANNEL_MIX, image_size=224, seed=0)
        shard_set = ShardSet.scan(data_dir)
        per_worker = loader_rate(shard_set, batch_size=8, steps=LOADER_STEPS, output="views")
        decode_only = loader_rate(shard_set, batch_size=8, steps=LOADER_STEPS, output="images")
        print(
            f"loader, one worker (1 thread), read + decode + 2x224 + 8x96 views: {per_worker:7.1f} samples/s"
        )
        print(
            f"loader, one worker (1 thread), read + decode only (views on GPU): {decode_only:7.1f} samples/s"
        )
        batches = views_for_training(shard_set, batch, steps + 1)
        print(f"training: batch {batch} per step, {steps} timed step(s) after one warm-up, {threads} threads")
        rows = []
        for model, padded in [("chadavit_petit", False), ("chadavit_moyen", False), ("chadavit_moyen", True)]:
            rate = training_rate(data_dir, model, padded, batches, warmup=1)
            rows.append((model, padded, rate))
            path = "padded" if padded else "padding-free"
            need = rate / per_worker
            print(f"  {model:15s} {path:12s} {rate:7.2f} images/s -> {need:5.2f} workers per process here")
        free = next(rate for model, padded, rate in rows if model == "chadavit_moyen" and not padded)
        padded_rate = next(rate for model, padded, rate in rows if padded)
        print(f"padding-free / padded training images/s (chadavit_moyen): {free / padded_rate:.2f}x")
        flop_ratio = step_flops_per_image("chadavit_moyen", True) / step_flops_per_image(
            "chadavit_moyen", False
        )
        print(f"  (analytic FLOPs per image, padded / padding-free: {flop_ratio:.2f}x)")
        for model in ("chadavit_petit", "chadavit_moyen"):
            flops = step_flops_per_image(model, padded=False)
            gpu = GPU_PEAK_FLOPS * GPU_UTILISATION / flops
            print(
                f"GPU-equivalent {model}: {flops / 1e9:.0f} GFLOP/image/step -> ~{gpu:.0f} images/s "
                f"(A100, {GPU_UTILISATION:.0%} of bf16 peak) -> loader workers per GPU: "
                f"{gpu / decode_only:.1f} with views on the GPU, {gpu / per_worker:.1f} with views in workers"
            )
    print(f"(cores here: {os.cpu_count()}; loader workers scale linearly: each is an independent process)")
    report_batch_mix(*mix)


if __name__ == "__main__":
    main()
