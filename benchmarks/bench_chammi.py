"""CHAMMI at scale: streaming memory, decoding against the model, and the 1-NN stage.

1. Peak RSS of embedding 2,000 and then 20,000 synthetic CHAMMI rows of realistic size (CP-like
   tapes: 5 channels of 160 x 160 px, 8-bit PNG), each count in a fresh process: the embed stage
   streams from disk in batches, so the ratio should stay near 1 (the issue asks <= 1.2). The rows
   point at a pool of distinct files (the pixels are decoded for every row; only the disk is spared).
2. Images/s of the whole embed stage (decode with loader threads + resize + model) against the
   model's forward alone on the same images already decoded, in the same process.
3. The 1-NN stage (`protocols.chammi.evaluate_subdataset`) on random 384-wide features with
   CHAMMI's sizes: time and peak RSS.

    python benchmarks/bench_chammi.py                # everything (about 10 minutes on 2 cores)
    python benchmarks/bench_chammi.py --part knn     # one part: rss, throughput or knn
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from chadavit import create_model
from chadavit_bench.datasets import chammi
from chadavit_bench.embed import _embed_batch, extract_embeddings, read_images

CHANNEL = 160  # CP crops are 160 px per channel (CHAMMI paper); Allen and HPA are larger
POOL = 200  # distinct image files the rows point at
# Rows and Train rows per sub-dataset, as assumed here (not re-checked against the release in this
# repository): about 220,000 rows in all, as CHAMMI v1 (Zenodo 7988357), and about 70,000 Train rows
# (the size of the "morphem70k" training set). The other rows are task queries, split evenly
# between the tasks, the leave-out task scored in 5 groups. Replace with the exact counts when known.
SIZES = {"Allen": (65_103, 31_060), "HPA": (66_936, 17_000), "CP": (88_245, 21_000)}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_cp(root: Path, rows: int, seed: int = 0) -> None:
    """A CP folder of `rows` rows over `POOL` distinct 5-channel tapes (smooth cells plus noise)."""
    folder = root / "chammi" / "CP"
    (folder / "crops").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:CHANNEL, :CHANNEL]
    for i in range(POOL):
        path = folder / "crops" / f"{i}.png"
        if path.exists():
            continue
        planes = []
        for _ in range(5):
            cy, cx, r = rng.uniform(40, 120), rng.uniform(40, 120), rng.uniform(15, 50)
            cell = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2)) * 200
            planes.append(np.clip(cell + rng.normal(0, 12, cell.shape), 0, 255).astype(np.uint8))
        Image.fromarray(np.concatenate(planes, axis=1)).save(path)
    tasks = ["Task_one", "Task_two", "Task_three", "Task_four"]
    with (folder / "enriched_meta.csv").open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["file_path", "channel_width", "train_test_split", "Label", *tasks, "Plate"])
        for row in range(rows):
            split = "Train" if row % 2 else tasks[row % 8 // 2]
            flags = [str(split == t) for t in tasks]
            writer.writerow(
                [f"CP/crops/{row % POOL}.png", CHANNEL, split, f"c{row % 7}", *flags, f"P{row % 5}"]
            )


def tiny_model() -> torch.nn.Module:
    return create_model(
        "chadavit_petit", embed_dim=32, depth=2, num_heads=2, img_size=32, patch_size=8
    ).eval()


def rss_child(rows: int, root: Path) -> dict:
    """In this (fresh) process: embed `rows` CP rows with 4 loader threads; peak RSS after."""
    torch.set_num_threads(2)
    dataset = chammi.load_subdataset(root, "chammi-cp")
    assert len(dataset) == rows
    model = tiny_model()
    from chadavit_bench.embed import EmbedSetting

    start = time.perf_counter()
    extract_embeddings(model, "bench", dataset, EmbedSetting(img_size=32), None, batch_size=64, workers=4)
    return {"rows": rows, "seconds": time.perf_counter() - start, "peak_rss_mib": peak_rss_mib()}


def part_rss(work: Path) -> dict:
    results = {}
    for rows in (2_000, 20_000):
        root = work / f"rss-{rows}"
        write_cp(root, rows)
        command = [sys.executable, __file__, "--child-rss", str(rows), "--root", str(root)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[rows] = json.loads(output.strip().splitlines()[-1])
        print(f"  {rows:>6} rows: peak RSS {results[rows]['peak_rss_mib']:.0f} MiB, "
              f"{results[rows]['seconds']:.0f} s")  # fmt: skip
    ratio = results[20_000]["peak_rss_mib"] / results[2_000]["peak_rss_mib"]
    print(f"  peak RSS ratio 20,000 / 2,000 rows: {ratio:.2f}")
    return {"runs": results, "ratio": ratio}


def part_throughput(work: Path, model_name: str, img_size: int, rows: int, workers: int) -> dict:
    """Images/s of the embed stage vs the model's forward on the same images, pre-decoded."""
    root = work / "throughput"
    write_cp(root, rows)
    dataset = chammi.load_subdataset(root, "chammi-cp")
    model = create_model(model_name, img_size=img_size).eval()
    from chadavit_bench.embed import EmbedSetting

    batch = 32
    extract_embeddings(
        model, "warm", dataset.subset(range(batch)), EmbedSetting(img_size), None, batch, "cpu", workers
    )
    start = time.perf_counter()
    extract_embeddings(model, "bench", dataset, EmbedSetting(img_size=img_size), None, batch, "cpu", workers)
    stage = rows / (time.perf_counter() - start)
    images = read_images(dataset, range(rows), list(range(5)), img_size, workers)
    start = time.perf_counter()
    for first in range(0, rows, batch):
        _embed_batch(model, images[first : first + batch], "cpu", patch_maps=False)
    forward = rows / (time.perf_counter() - start)
    print(f"  {model_name} at {img_size} px, {rows} CP images, {workers} loader threads:")
    print(
        f"  embed stage {stage:.1f} images/s, forward alone {forward:.1f} images/s, "
        f"ratio {stage / forward:.2f}"
    )
    return {
        "model": model_name,
        "img_size": img_size,
        "stage": stage,
        "forward": forward,
        "ratio": stage / forward,
    }


def part_knn(dim: int = 384, metric: str = "l2") -> dict:
    """The 1-NN stage on random features with CHAMMI's sizes, the leave-out tasks included."""
    from chadavit_bench.protocols.chammi import evaluate_subdataset

    rng = np.random.default_rng(0)
    total = total_cpu = 0.0
    for sub in chammi.SUBDATASETS:
        rows, train = SIZES[sub.folder]
        x = rng.normal(size=(rows, dim)).astype(np.float32)
        labels = rng.integers(0, 20, size=rows)
        splits = np.array(["Train"] * train + [""] * (rows - train), dtype=object)
        queries = np.arange(train, rows)
        parts = np.array_split(queries, len(sub.tasks))
        tasks = dict(zip(sub.tasks, parts, strict=True))
        for task, part in tasks.items():
            splits[part] = task
        groups = rng.choice([f"g{i}" for i in range(5)], size=rows)
        start, cpu = time.perf_counter(), time.process_time()
        evaluate_subdataset(sub.folder, x, labels, list(splits), tasks, sub.leave_out, groups, metric)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        total += seconds
        total_cpu += cpu
        # CPU seconds (all threads) do not grow when other work shares the machine; wall seconds do.
        print(f"  {sub.folder}: {rows:,} rows ({train:,} Train), {seconds:.0f} s wall, {cpu:.0f} s CPU")
    rows = sum(r for r, _ in SIZES.values())
    print(
        f"  1-NN on {rows:,} x {dim}: {total:.0f} s wall, {total_cpu:.0f} s CPU, "
        f"peak RSS {peak_rss_mib():.0f} MiB"
    )
    return {"seconds": total, "cpu_seconds": total_cpu, "peak_rss_mib": peak_rss_mib()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["rss", "throughput", "knn", "all"], default="all")
    parser.add_argument("--model", default="chadavit_petit", help="model of the throughput part")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--rows", type=int, default=256, help="images of the throughput part")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--child-rss", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_rss:
        print(json.dumps(rss_child(args.child_rss, args.root)))
        return
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        if args.part in ("rss", "all"):
            print("peak RSS of the embed stage (tiny model, CP tapes 5 x 160 x 160):")
            part_rss(work)
        if args.part in ("throughput", "all"):
            print("embed stage vs forward alone:")
            part_throughput(work, args.model, args.img_size, args.rows, args.workers)
        if args.part in ("knn", "all"):
            print("1-NN stage, random features:")
            part_knn()


if __name__ == "__main__":
    main()
