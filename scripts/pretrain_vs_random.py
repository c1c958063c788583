"""Does DINO pretraining help? A pretrained tiny ChAda-ViT against the same architecture at random init.

1. `chadavit-bench synthetic`: the seven synthetic downstream datasets (public layouts) and an
   unlabelled pretraining corpus drawn by the same generators from another random stream;
2. `chadavit-train`: DINO pretraining of a tiny chadavit_petit on that corpus (CPU, one process);
3. `chadavit-bench run-all`: every task for the exported teacher and for the same architecture at
   seeded random init, with the same evaluation seeds;
4. `chadavit-bench compare`: per benchmark the two headline scores, their difference and the
   verdict, also written to OUT/comparison.csv.

`--size full` is the run quoted in docs/bench.md; `--size small` is the CI-sized run of tests/e2e.
Every draw is seeded: the same size and seed give the same table on the same machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from stages import BIN, ROOT, StageFailed, run_stage, settings_args

IMAGE_SIZE = 32
# chadavit_petit (D 96, 2 heads) cut to fit a CPU: 8 px patches on 32 px images (16 patches per channel).
MODEL_ARGS = {"img_size": IMAGE_SIZE, "patch_size": 8}


@dataclass(frozen=True)
class SignalSize:
    """How large the experiment is."""

    scale: int  # `synthetic --scale`: downstream dataset sizes
    pretraining_images: int
    epochs: int
    depth: int
    seeds: int  # linear-probe and reconstruction seeds


SIZES = {
    "full": SignalSize(scale=5, pretraining_images=6000, epochs=15, depth=4, seeds=3),
    "small": SignalSize(scale=2, pretraining_images=1536, epochs=4, depth=2, seeds=2),
}

# DINO at the scale of minutes: small crops and head, no warm-ups (see chadavit.train.testing).
TRAIN_SETTINGS: dict[str, object] = {
    "data.image_size": IMAGE_SIZE,
    "augment.global_crop_size": IMAGE_SIZE,
    "augment.local_crop_size": 16,
    "dino.out_dim": 1024,
    "dino.hidden_dim": 256,
    "dino.bottleneck_dim": 64,
    "dino.teacher_temp": 0.04,
    "dino.warmup_teacher_temp_epochs": 0,
    "optim.warmup_epochs": 1,
    "threads": 2,
}


def model_args(size: SignalSize) -> dict[str, int]:
    return {**MODEL_ARGS, "depth": size.depth}


def experiment(out: Path, size: SignalSize, seed: int) -> Path:
    data, run, bench = out / "data", out / "run", out / "bench"
    run_stage(
        "1/4",
        "chadavit-bench synthetic: downstream datasets and an unlabelled pretraining corpus",
        [
            str(BIN / "chadavit-bench"), "synthetic", str(data), "--image-size", str(IMAGE_SIZE),
            "--scale", str(size.scale), "--pretraining-images", str(size.pretraining_images),
            "--seed", str(seed),
        ],
    )  # fmt: skip
    architecture = [arg for k, v in model_args(size).items() for arg in ("--model-arg", f"{k}={v}")]
    run_stage(
        "2/4",
        "chadavit-train: DINO pretraining of a tiny chadavit_petit",
        [
            str(BIN / "chadavit-train"), "--data", str(data / "pretraining"), "--out", str(run),
            "--model", "chadavit_petit", *architecture, "--epochs", str(size.epochs),
            "--batch-size", "64", "--lr", "0.004", "--local-crops", "4", "--num-workers", "1",
            "--seed", str(seed), "--resume", "auto", *settings_args(TRAIN_SETTINGS),
        ],
    )  # fmt: skip
    options = "&".join(f"{k}={v}" for k, v in model_args(size).items())
    run_stage(
        "3/4",
        "chadavit-bench run-all: pretrained vs random init",
        [
            str(BIN / "chadavit-bench"), "run-all", "--data-root", str(data), "--out", str(bench),
            "--manifest", str(data / "manifests" / "cells.csv"), "--img-size", str(IMAGE_SIZE),
            "--seeds", str(size.seeds), "--tasks", "knn,linear,regression,reconstruction,joint",
            "--model", f"{run / 'model'}?label=pretrained",
            "--model", f"random:chadavit_petit?{options}&seed={seed}&label=random-init",
        ],
    )  # fmt: skip
    comparison = out / "comparison.csv"
    run_stage(
        "4/4",
        "chadavit-bench compare: pretrained vs random-init",
        [
            str(BIN / "chadavit-bench"),
            "compare",
            str(bench),
            "pretrained",
            "random-init",
            "--csv",
            str(comparison),
        ],
    )
    return comparison


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "signal-out", help="output folder (default signal-out/)"
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="full", help="full (docs) or small (CI)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        comparison = experiment(args.out.resolve(), SIZES[args.size], args.seed)
    except StageFailed as error:
        print(f"stopped: {error}", file=sys.stderr)
        return 1
    print(f"\nfinished in {time.monotonic() - started:.0f} s; table: {comparison}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
