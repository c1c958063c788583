"""`make bench-gpu`: the measurements only a GPU can make, ready for the first machine with one.

On a CUDA device, in bf16 autocast (the training default on GPU), in one run of a few minutes:
1. the model benchmark (benchmarks/bench_model.py: padded vs padding-free, training and inference,
   batch 64) on the GPU;
2. 50 full DINO steps of chadavit_moyen at batch 64 through the real `Trainer.train_step`, with the
   views made on the GPU (`data.augment_on=device`, the GPU default): images/s, peak GPU memory,
   and the achieved FLOP/s from the analytic estimate (chadavit.models.flops) as a fraction of the
   GPU's bf16 peak and of the 35% planning figure that bench_train.py and docs/benchmarks.md use.

Without CUDA it prints one line and exits 0. `--cpu-smoke` runs the same code, tiny, on the CPU
(bf16 autocast included), so that a test keeps the script from rotting between GPU runs.

    python benchmarks/gpu_bench.py                 # on a GPU machine (make bench-gpu)
    python benchmarks/gpu_bench.py --cpu-smoke     # seconds, anywhere
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from chadavit.data.loader import EpochPlan, MultiCropBatch, ShardSet, make_epoch_loader, plan_epochs
from chadavit.data.testing import write_shards
from chadavit.models.flops import forward_flops
from chadavit.models.registry import model_config
from chadavit.train.config import TrainConfig
from chadavit.train.distributed import DistContext
from chadavit.train.loop import Trainer

CHANNEL_MIX = (1, 2, 3, 4, 5)  # mean 3, like IDRCell100k (as bench_train.py)
DISTINCT_BATCHES = 8
PLANNING_UTILISATION = 0.35  # the fraction of peak bench_train.py assumes for a GPU estimate
# Dense bf16 tensor-core peaks in TFLOP/s, from NVIDIA's datasheets (A100: 312; H100 SXM and H200:
# 989; H100 PCIe: 756; L4: 121; A10: 125). Matched on the device name, most specific first.
BF16_PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0),
                    ("L4", 121.0), ("A10", 125.0))  # fmt: skip


@dataclass(frozen=True)
class Setting:
    """What one run measures; `full` on a GPU, `smoke` tiny on the CPU."""

    model: str
    model_overrides: dict
    batch_size: int
    steps: int
    warmup: int
    image_size: int
    overrides: dict  # TrainConfig dotted overrides
    model_bench_args: list[str]


def full_setting(steps: int, batch_size: int) -> Setting:
    return Setting(
        model="chadavit_moyen",
        model_overrides={},
        batch_size=batch_size,
        steps=steps,
        warmup=5,
        image_size=224,
        overrides={},  # the paper's DINO settings: 2 x 224 + 8 x 96 crops, 65,536 prototypes
        model_bench_args=["--batch-size", str(batch_size), "--repeats", "3"],
    )


def smoke_setting() -> Setting:
    return Setting(
        model="chadavit_petit",
        model_overrides={"embed_dim": 32, "depth": 1, "num_heads": 2, "img_size": 32},
        batch_size=4,
        steps=2,
        warmup=1,
        image_size=32,
        overrides={
            "augment.global_crop_size": 32,
            "augment.local_crop_size": 16,
            "augment.n_local_crops": 2,
            "dino.out_dim": 64,
            "dino.hidden_dim": 32,
            "dino.bottleneck_dim": 16,
        },
        model_bench_args=["--model", "chadavit_petit", "--batch-size", "4", "--mixes", "idrcell",
                          "--image-size", "32"],
    )  # fmt: skip


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    if given is not None or device.type != "cuda":
        return given
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS if key in name), None)


def run_model_benchmark(setting: Setting, device: torch.device) -> None:
    """bench_model.py in its own process (it tunes the allocator and threads for itself)."""
    script = Path(__file__).with_name("bench_model.py")
    command = [sys.executable, str(script), "--device", device.type, *setting.model_bench_args]
    print(f"== model benchmark: {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True)


def image_batches(data_dir: Path, config: TrainConfig, count: int) -> list[MultiCropBatch]:
    """`count` decoded batches as the loader sends them with `augment_on=device` (views not made yet).

    At most `DISTINCT_BATCHES` are read and then reused: a step's cost depends on the channel counts,
    not on the pixels, and decoding 50 x 64 PNG images on one thread would take longer than the steps.
    """
    shard_set = ShardSet.scan(data_dir)
    steps, streams = plan_epochs(shard_set, config.data, 0, 1)
    steps = min(steps, DISTINCT_BATCHES)
    plan = EpochPlan(shard_set, config.data, config.augment, 0, 0, 0, 1, steps, streams, 10, output="images")
    batches = list(make_epoch_loader(plan))
    return [batches[i % len(batches)] for i in range(count)]


def step_flops(config: TrainConfig, model: str, overrides: dict, counts: list[int]) -> float:
    """Analytic backbone FLOPs of one DINO step: the teacher's forward on the 2 global views, the
    student's forward and backward (3x forward) on the global and local views. The DINO head adds
    under 1% at chadavit_moyen's size and is left out."""
    vit = model_config(model, **overrides)
    augment = config.augment
    size_global, size_local = augment.global_crop_size, augment.local_crop_size
    global_fwd = forward_flops(vit, counts, size_global, size_global)
    local_fwd = forward_flops(vit, counts, size_local, size_local)
    views = len(augment.blur_p_global)
    return views * global_fwd + 3 * (views * global_fwd + augment.n_local_crops * local_fwd)


def run_dino_steps(setting: Setting, device: torch.device, peak: float | None) -> None:
    print(f"== {setting.steps} DINO steps of {setting.model}, batch {setting.batch_size}, bf16, views on "
          f"{device.type}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        per_shard = max(setting.batch_size, 16)
        write_shards(data_dir, [per_shard] * 4, channel_counts=CHANNEL_MIX, image_size=setting.image_size)
        config = TrainConfig(
            data_dir=str(data_dir), out_dir=str(Path(tmp) / "run"), model=setting.model,
            model_overrides=setting.model_overrides, epochs=1, precision="bf16",
        ).with_overrides({
            "data.batch_size": setting.batch_size, "data.num_workers": 0, "data.augment_on": "device",
            "data.steps_per_epoch": setting.warmup + setting.steps, **setting.overrides,
        })  # fmt: skip
        batches = image_batches(data_dir, config, setting.warmup + setting.steps)
        trainer = Trainer(config, ShardSet.scan(data_dir), DistContext(0, 1, 0, 1, device), reporter=None)
        trainer.objective.network.train()
        seconds, images, flops, losses = 0.0, 0, 0.0, []
        for index, batch in enumerate(batches):
            if index == setting.warmup and device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            started = time.perf_counter()
            views = batch.with_views(config.augment, config.seed, 0, 0, device)
            loss = trainer.train_step(
                [b.to(device) for b in views.global_batches()], [b.to(device) for b in views.local_batches()]
            )
            losses.append(float(loss))  # a host sync: the step has finished
            trainer.step += 1
            if index >= setting.warmup:
                seconds += time.perf_counter() - started
                images += len(batch)
                counts = batch.channel_counts.tolist()
                flops += step_flops(config, setting.model, setting.model_overrides, counts)
        finite = all(torch.isfinite(torch.tensor(losses)).tolist())
        print(f"losses: first {losses[0]:.4f}, last {losses[-1]:.4f}, all finite: {finite}")
        print(f"training: {images / seconds:.1f} images/s ({setting.steps} steps after {setting.warmup} "
              f"warm-up steps, views made on the {device.type})")  # fmt: skip
        if device.type == "cuda":
            print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
        achieved = flops / seconds / 1e12
        print(f"FLOP estimate: {flops / images / 1e9:.3g} GFLOP per image per step -> {achieved:.3g} TFLOP/s")
        if peak is not None:
            utilisation = achieved / peak
            planned = utilisation / PLANNING_UTILISATION
            print(f"  {utilisation:.1%} of the bf16 peak ({peak:.0f} TFLOP/s); measured / planned "
                  f"({PLANNING_UTILISATION:.0%} of peak): {planned:.2f}")  # fmt: skip
        if not finite:
            raise SystemExit("error: a DINO step in bf16 gave a non-finite loss")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="a tiny run on the CPU (for the tests)")
    parser.add_argument("--steps", type=int, default=50, help="timed DINO steps (default 50)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak")
    parser.add_argument("--skip-model-bench", action="store_true", help="only the DINO steps")
    args = parser.parse_args()
    if args.cpu_smoke:
        device, setting = torch.device("cpu"), smoke_setting()
        torch.set_num_threads(1)
    elif torch.cuda.is_available():
        device, setting = torch.device("cuda"), full_setting(args.steps, args.batch_size)
    else:
        print("bench-gpu: no CUDA device here, nothing measured (--cpu-smoke runs a tiny CPU version)")
        return 0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke run)"
    print(f"device: {name}; torch {torch.__version__}")
    started = time.perf_counter()
    if not args.skip_model_bench:
        run_model_benchmark(setting, device)
    run_dino_steps(setting, device, peak_tflops(device, args.peak_tflops))
    print(f"bench-gpu done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
