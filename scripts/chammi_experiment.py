"""CHAMMI with this toolkit alone: supervised vs DINO vs random init on synthetic CHAMMI.

1. `chadavit-bench synthetic`: a small CHAMMI in the official layout (and the other synthetic sets);
2. `idrcell import-chammi`: its Train split (Allen, HPA and CP: 3, 4 and 5 channels) as idrcell-v1
   shards, with the labels and channel names in KEY.json;
3. `chadavit-train`: a tiny ChAda-ViT trained on those shards, per seed, once with
   `--objective supervised` (ProxyNCA++ on the labels) and once with DINO (labels unused);
4. `chadavit-bench run chammi`: 1-NN as MorphEm's evaluator scores it, for both trained models
   and the same architecture at seeded random init, per seed.

The synthetic data is drawn once (seed 0); the seeds vary the training and the random init. The
table (OUT/chammi_scores.csv, and printed) holds per model and seed the three sub-datasets' means
over their out-of-distribution tasks and the CHAMMI score (macro-F1 x 100). `--size full` is the
run quoted in docs/bench.md; `--size small` checks the pipeline in a few minutes.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from stages import BIN, run_stage, script_main, settings_args

IMAGE_SIZE = 32
SEEDS = (0, 1)
MODELS = ("supervised", "dino", "random-init")


@dataclass(frozen=True)
class ChammiSize:
    scale: int  # `synthetic --scale`: images per class and split
    epochs: int
    depth: int
    batch_size: int


SIZES = {
    "full": ChammiSize(scale=2, epochs=6, depth=2, batch_size=32),
    "small": ChammiSize(scale=1, epochs=1, depth=1, batch_size=16),
}

# chadavit_petit (D 96) on 32 px images with 8 px patches, as scripts/pretrain_vs_random.py.
MODEL_ARGS = {"img_size": IMAGE_SIZE, "patch_size": 8}
# Shared by both objectives: 32 px views from the 224 px shards, and the 32 px scaling of the
# blur and intensity jitter that scripts/pretrain_vs_random.py found necessary at this size.
COMMON_SETTINGS: dict[str, object] = {
    "data.image_size": IMAGE_SIZE,
    "augment.global_crop_size": IMAGE_SIZE,
    "augment.blur_sigma": [0.015, 0.3],
    "augment.intensity_shift": [-0.05, 0.05],
    "optim.warmup_epochs": 1,
    "optim.weight_decay_end": 0.04,
    "threads": 2,
}
SUPERVISED = ["--objective", "supervised", "--local-crops", "0", "--lr", "0.01"]
DINO_SETTINGS: dict[str, object] = {
    "augment.local_crop_size": 16,
    "augment.local_crop_scale": [0.15, 0.4],
    "data.group_by_channels": False,
    "dino.centering": "sinkhorn_knopp",
    "dino.out_dim": 1024,
    "dino.hidden_dim": 256,
    "dino.bottleneck_dim": 64,
    "dino.teacher_temp": 0.04,
    "dino.warmup_teacher_temp_epochs": 0,
}
DINO = ["--objective", "dino", "--local-crops", "2", "--lr", "0.002", *settings_args(DINO_SETTINGS)]


def model_args(size: ChammiSize) -> dict[str, int]:
    return {**MODEL_ARGS, "depth": size.depth}


def train(data: Path, run: Path, size: ChammiSize, seed: int, objective_args: list[str]) -> None:
    architecture = [arg for k, v in model_args(size).items() for arg in ("--model-arg", f"{k}={v}")]
    run_stage(
        f"train {run.name}",
        f"chadavit-train {objective_args[1]} (seed {seed})",
        [
            str(BIN / "chadavit-train"), "--data", str(data), "--out", str(run), "--model", "chadavit_petit",
            *architecture, "--epochs", str(size.epochs), "--batch-size", str(size.batch_size),
            "--num-workers", "0", "--seed", str(seed), "--resume", "auto", *objective_args,
            *settings_args(COMMON_SETTINGS),
        ],
    )  # fmt: skip


def scores(bench: Path) -> dict[str, dict[str, float]]:
    """Model label -> {sub-dataset OOD means and score} from the bench's results.csv."""
    table: dict[str, dict[str, float]] = {}
    with open(bench / "results.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row.get("task") != "chammi" or row.get("features", "cls") != "cls":
                continue
            if row["metric"] in ("chammi_score", "f1_macro_ood_mean"):
                name = "score" if row["metric"] == "chammi_score" else row["dataset"]
                table.setdefault(row["model"], {})[name] = 100 * float(row["value"])
    return table


def experiment(out: Path, size: ChammiSize, seed: int) -> Path:
    data, shards = out / "data", out / "chammi-train"
    run_stage(
        "1",
        "chadavit-bench synthetic: a small CHAMMI in the official layout",
        [str(BIN / "chadavit-bench"), "synthetic", "--out", str(data), "--image-size", str(IMAGE_SIZE),
         "--scale", str(size.scale), "--seed", "0"],
    )  # fmt: skip
    run_stage(
        "2",
        "idrcell import-chammi: the Train split as idrcell-v1 shards",
        [str(BIN / "idrcell"), "import-chammi", str(data), "--out", str(shards), "--split", "Train"],
    )
    rows = []
    for train_seed in (seed + offset for offset in range(len(SEEDS))):
        supervised, dino = out / f"supervised-{train_seed}", out / f"dino-{train_seed}"
        train(shards, supervised, size, train_seed, SUPERVISED)
        train(shards, dino, size, train_seed, DINO)
        options = "&".join(f"{k}={v}" for k, v in model_args(size).items())
        bench = out / f"bench-{train_seed}"
        run_stage(
            f"bench {train_seed}",
            "chadavit-bench run chammi: supervised, DINO and random init",
            [
                str(BIN / "chadavit-bench"), "run", "chammi", "--data-root", str(data), "--out", str(bench),
                "--img-size", str(IMAGE_SIZE), "--dataset", "chammi-allen", "--dataset", "chammi-hpa",
                "--dataset", "chammi-cp",
                "--model", f"{supervised / 'model'}?label=supervised",
                "--model", f"{dino / 'model'}?label=dino",
                "--model", f"random:chadavit_petit?{options}&seed={train_seed}&label=random-init",
            ],
        )  # fmt: skip
        found = scores(bench)
        for model in MODELS:
            rows.append({"model": model, "seed": train_seed, **found.get(model, {})})
    table = out / "chammi_scores.csv"
    columns = ["model", "seed", "chammi-allen", "chammi-hpa", "chammi-cp", "score"]
    with open(table, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    print("\n" + " | ".join(columns))
    for row in rows:
        cells = [str(row["model"]), str(row["seed"])]
        cells += [f"{row[c]:.2f}" if c in row else "-" for c in columns[2:]]
        print(" | ".join(cells))
    return table


def main(argv: list[str] | None = None) -> int:
    return script_main(__doc__, "chammi-out", SIZES, experiment, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
