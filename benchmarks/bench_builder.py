"""Builder throughput and memory against the emulator (issue 4's performance targets).

Compares in one run:
1. images/s achieved by the stager against an emulator that adds 50 ms to every request, with
   `--concurrency 16`, versus (a) the ideal bound concurrency / latency / requests per image (the
   issue's target: >= 0.8), (b) the server's ceiling on this machine: the same requests issued by a
   bare aiohttp client that does no work with the answers, and (c) the CPU bound: cores divided by the
   CPU seconds per image of stager plus emulator. The exit status is 0 when the stager reaches 0.8
   of the lowest of the three, i.e. when the pipeline itself loses little;
2. the stager's peak memory (RSS) for 2,000 images versus 200 (target: flat, ratio ~1);
3. the CPU time per image of decode + anti-aliased resize + PNG encode on IDR-sized planes;
and prints the projected wall time of the full 79 x 1,300 build at an assumed IDR latency.

`--zarr` measures the OME-Zarr pixel source instead (the IDR since 2026; docs/benchmarks.md, "Zarr"):
images/s against the emulator's 2026 mode at 50 ms against concurrency / latency / requests per image,
peak memory for 200 vs 2,000 images (`--zarr-sizes`), and the bytes downloaded per stored image by
the Zarr path (the smallest pyramid level with a short side >= 224 px) against the render_image path
and against reading the full-resolution level.

The emulator, the bare client and each stager run are separate processes, so that no two share an
interpreter and each peak RSS is its own. The emulator synthesises pixels on first request, so a
warm-up pass stages the 2,000 images once at zero latency to fill its plane cache before the 50 ms
latency is switched on. On a small machine (2 cores), where emulator and stager share the cores
(and other jobs may too), (b) or (c) can sit below (a), which is why they are measured, not assumed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from idrcell.render import render_channel

LATENCY_S = 0.050
CONCURRENCY = 16
CHANNELS = 2
REQUESTS_PER_IMAGE = 1 + CHANNELS  # imgData + one render_image per channel
SIZES = (200, 2000)
# Not measured here (no internet): IDR's render_image of a ~1,000 px plane typically answers in a few
# hundred ms; 0.3 s is the assumption behind the projection below.
IDR_LATENCY_S = 0.3
IDR_CONCURRENCY = 8  # the builder's polite default
FULL_BUILD_IMAGES = 79 * 1300

STUDY, CONTAINER, SCREEN_ID = "idr0990-bench-throughput", "screenA", 990
CATALOGUE = {
    "schema": "idrcell-emulator-catalogue-v1",
    "name": "bench",
    "description": "One screen of 2,880 two-channel 128 x 128 images for the builder benchmark.",
    "studies": [
        {
            "study": STUDY,
            "container": CONTAINER,
            "id": SCREEN_ID,
            "annotations": [["Sample Type", "cell"], ["Imaging Method", "fluorescence microscopy"]],
            "plates": 10,
            "wells": [8, 12],
            "fields": [3, 3],
            "image": {"width": 128, "height": 128, "channels": CHANNELS, "pixels_type": "uint8"},
        }
    ],
}

# Runs in its own interpreter: serve the catalogue; each line on stdin sets the added latency (s).
EMULATOR_SCRIPT = """
import sys
from idrcell.emulator import EmulatorServer, FaultConfig
mode = sys.argv[2] if len(sys.argv) > 2 else "classic"
server = EmulatorServer(sys.argv[1], max_limit=1000, plane_cache_mb=512, mode=mode).start()
print(server.base_url, flush=True)
for line in sys.stdin:
    server.set_faults(FaultConfig(latency_s=float(line)))
    print("ok", flush=True)
"""

# Runs in a fresh interpreter: stage one experiment, print its result and the process's peak RSS.
STAGE_SCRIPT = """
import json, resource, sys
from dataclasses import asdict
from pathlib import Path
from idrcell.client import ClientConfig
from idrcell.experiments import load_experiments
from idrcell.stage import StageConfig, stage_experiment
experiments_csv, out, base_url, concurrency = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
source = sys.argv[5] if len(sys.argv) > 5 else "auto"
zarr_base = sys.argv[6] if len(sys.argv) > 6 else base_url + "/idr/zarr"
(experiment,) = load_experiments(experiments_csv)
config = StageConfig(
    client=ClientConfig(base_url=base_url, concurrency=concurrency),
    pixel_source=source,
    zarr_base_url=zarr_base,
)
result = stage_experiment(experiment, Path(out), config)
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu_s = usage.ru_utime + usage.ru_stime
print(json.dumps({"result": asdict(result), "peak_rss_mb": usage.ru_maxrss / 1024, "cpu_s": cpu_s}))
"""


# Runs in its own interpreter: the same requests as the stager (imgData, then every channel's
# render_image), with the same concurrency cap, doing nothing with the answers.
BARE_CLIENT_SCRIPT = """
import asyncio, json, sys, time
import aiohttp
base_url, ids_file, concurrency, channels = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
image_ids = json.load(open(ids_file))
async def main():
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(base_url, cookie_jar=jar) as session:
        async with session.get("/webclient/", params={"experimenter": "-1"}) as response:
            await response.read()
        slots = asyncio.Semaphore(concurrency)
        async def get(path, params=None):
            async with slots:
                async with session.get(path, params=params) as response:
                    return await response.read()
        async def image(image_id):
            json.loads(await get(f"/webgateway/imgData/{image_id}/"))
            await asyncio.gather(*(
                get(f"/webgateway/render_image/{image_id}/0/0/", {"c": f"{c}$FFFFFF", "m": "g", "q": "1.0"})
                for c in range(1, channels + 1)
            ))
        started = time.monotonic()
        await asyncio.gather(*(image(i) for i in image_ids))
        print(json.dumps({"elapsed_s": time.monotonic() - started}))
asyncio.run(main())
"""


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare_client_run(workdir: Path, base_url: str, image_ids: list[int]) -> float:
    ids_file = workdir / "image_ids.json"
    ids_file.write_text(json.dumps(image_ids))
    command = [
        sys.executable,
        "-c",
        BARE_CLIENT_SCRIPT,
        base_url,
        str(ids_file),
        str(CONCURRENCY),
        str(CHANNELS),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return len(image_ids) / json.loads(done.stdout.strip().splitlines()[-1])["elapsed_s"]


def stage_run(
    workdir: Path,
    base_url: str,
    n_images: int,
    tag: str = "",
    source: str = "auto",
    experiment: tuple[str, str, int] = (STUDY, CONTAINER, SCREEN_ID),
) -> dict:
    experiments = workdir / f"list_{n_images}{tag}.csv"
    study, container, container_id = experiment
    experiments.write_text(f"study,container,id,n_images\n{study},{container},{container_id},{n_images}\n")
    out = workdir / f"out_{n_images}{tag}"
    bin_dir = Path(sys.executable).parent
    command = [
        str(bin_dir / "python"),
        "-c",
        STAGE_SCRIPT,
        str(experiments),
        str(out),
        base_url,
        str(CONCURRENCY),
        source,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["result"]["selected"] == n_images, report
    return report


def fluorescence_plane(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Blurred bright blobs on a dark, noisy background: JPEG-compresses like a real channel."""
    plane = rng.normal(20, 4, (height, width))
    ys, xs = np.mgrid[0:height, 0:width]
    for _ in range(60):
        cy, cx, radius = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(8, 25)
        plane += 180 * np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * radius**2))
    return np.clip(plane, 0, 255).astype(np.uint8)


def cpu_per_channel(height: int = 1024, width: int = 1344, repeats: int = 12) -> float:
    """Seconds of CPU to turn one IDR-sized JPEG channel into the 224 x 224 PNG (idr0002's plane size)."""
    rng = np.random.default_rng(0)
    jpegs = []
    for _ in range(repeats):
        buffer = io.BytesIO()
        Image.fromarray(fluorescence_plane(rng, height, width)).save(buffer, format="JPEG", quality=95)
        jpegs.append(buffer.getvalue())
    render_channel([(0, 0, jpegs[0])], width, height)  # warm up imports and caches
    started = time.process_time()
    for data in jpegs:
        render_channel([(0, 0, data)], width, height)
    return (time.process_time() - started) / repeats


def mean_default_channels() -> float:
    """Mean channel count of the 79 default experiments, from the catalogue's average image size."""
    from idrcell.experiments import parse_experiments

    default = resources.files("idrcell").joinpath("data", "default_experiments.csv").read_text("utf-8")
    chosen = {(e.study, e.container) for e in parse_experiments(default)}
    tsv = resources.files("idrcell").joinpath("data", "idr_studies.tsv").read_text("utf-8")
    counts = []
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t"):
        if (row["Study"], row["Container"]) in chosen:
            dims = [part.strip() for part in row["Avg. Image Dim (XYZCT)"].split("x")]
            counts.append(min(10, max(1, round(float(dims[3])))))
    return statistics.mean(counts)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-builder-") as tmp:
        workdir = Path(tmp)
        spec = workdir / "bench_catalogue.json"
        spec.write_text(json.dumps(CATALOGUE))
        emulator = subprocess.Popen(
            [sys.executable, "-c", EMULATOR_SCRIPT, str(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert emulator.stdin is not None and emulator.stdout is not None
            base_url = emulator.stdout.readline().strip()
            warm = stage_run(workdir, base_url, SIZES[-1], tag="_warmup")
            stage_json = next((workdir / f"out_{SIZES[-1]}_warmup").glob("staging/*/stage.json"))
            image_ids = [s["image_id"] for s in json.loads(stage_json.read_text())["samples"]]
            emulator.stdin.write(f"{LATENCY_S}\n")
            emulator.stdin.flush()
            assert emulator.stdout.readline().strip() == "ok"
            ceiling = bare_client_run(workdir, base_url, image_ids)
            runs = {}
            for n in SIZES:
                before = process_cpu_s(emulator.pid)
                runs[n] = stage_run(workdir, base_url, n)
                runs[n]["emulator_cpu_s"] = process_cpu_s(emulator.pid) - before
        finally:
            emulator.kill()
            emulator.wait(timeout=30)
    ideal = CONCURRENCY / LATENCY_S / REQUESTS_PER_IMAGE
    largest = runs[SIZES[-1]]
    # What this machine's cores can sustain when they host both the emulator and the stager.
    cpu_per_image = (largest["cpu_s"] + largest["emulator_cpu_s"]) / SIZES[-1]
    cpu_bound = (os.cpu_count() or 1) / cpu_per_image
    bound = min(ideal, ceiling, cpu_bound)
    print(f"emulator latency {LATENCY_S * 1000:.0f} ms, concurrency {CONCURRENCY}, {CHANNELS} channels/image")
    print(f"warm-up at zero latency (cold emulator): {SIZES[-1] / warm['result']['elapsed_s']:.1f} images/s")
    print(
        f"ideal bound: {CONCURRENCY} / {LATENCY_S} s / {REQUESTS_PER_IMAGE} requests = {ideal:.1f} images/s"
    )
    print(f"server ceiling (bare aiohttp client, same requests, no work): {ceiling:.1f} images/s")
    print(
        f"CPU bound: {os.cpu_count()} cores / ({largest['cpu_s'] / SIZES[-1] * 1000:.1f} ms stager + "
        f"{largest['emulator_cpu_s'] / SIZES[-1] * 1000:.1f} ms emulator CPU per image) "
        f"= {cpu_bound:.1f} images/s"
    )
    for n, report in runs.items():
        result = report["result"]
        rate = n / result["elapsed_s"]
        print(
            f"  stager, {n:5d} images: {result['elapsed_s']:6.1f} s, {rate:6.1f} images/s "
            f"({rate / ideal:.2f} of ideal), {result['requests'] / n:.2f} requests/image, "
            f"peak RSS {report['peak_rss_mb']:.0f} MB"
        )
    rate = SIZES[-1] / largest["result"]["elapsed_s"]
    ratio = rate / bound
    memory_ratio = largest["peak_rss_mb"] / runs[SIZES[0]]["peak_rss_mb"]
    print(f"throughput, achieved / ideal bound: {rate / ideal:.2f} (issue target >= 0.8)")
    print(
        f"throughput, achieved / min(ideal, server ceiling, CPU bound): {ratio:.2f} "
        "(>= 0.8: the pipeline loses little beyond what this machine allows)"
    )
    print(f"peak memory ratio, {SIZES[-1]} vs {SIZES[0]} images: {memory_ratio:.2f} (target: flat, ~1)")

    per_channel = cpu_per_channel()
    channels = mean_default_channels()
    print(
        f"CPU decode + resize + PNG per 1344 x 1024 channel: {per_channel * 1000:.1f} ms; per image of the "
        f"default list ({channels:.2f} channels on average): {per_channel * channels * 1000:.1f} ms"
    )
    requests = 1 + channels
    network_s = FULL_BUILD_IMAGES * requests * IDR_LATENCY_S / IDR_CONCURRENCY
    cpu_s = FULL_BUILD_IMAGES * channels * per_channel
    print(
        f"projected full build: {FULL_BUILD_IMAGES} images x {requests:.2f} requests at an assumed "
        f"IDR latency of {IDR_LATENCY_S * 1000:.0f} ms, --concurrency {IDR_CONCURRENCY}: "
        f"{network_s / 3600:.1f} h at full efficiency, {network_s / min(1.0, ratio) / 3600:.1f} h at the "
        f"pipeline efficiency measured above ({ratio:.2f}); its CPU work "
        f"({cpu_s / 3600:.1f} core-hours) overlaps with the downloads"
    )
    return 0 if ratio >= 0.8 and memory_ratio < 1.5 else 1


# The Zarr benchmark's catalogue: 2,880 two-channel 256 x 256 uint8 fields for throughput and
# memory (level 0 is the one read: 256 px is the smallest >= 224; uint8 so that the 2,000 images'
# planes fit the emulator's 512 MB plane cache, else the timed pass re-synthesises them), and
# 1,024 x 1,024 uint16 fields for the bytes per image (level 2, 256 px, is read), as zarr v2
# (OME-NGFF 0.4) with blosc, like the IDR's v0.4 plates.
ZARR_SCREEN, ZARR_BYTES_SCREEN = 991, 992
ZARR_CATALOGUE = {
    "schema": "idrcell-emulator-catalogue-v1",
    "name": "bench-zarr",
    "studies": [
        {
            "study": "idr0991-bench-zarr",
            "container": "screenA",
            "id": ZARR_SCREEN,
            "plates": 10,
            "wells": [8, 12],
            "fields": [3, 3],
            "zarr": {"version": "0.4", "compressor": "blosc"},
            "image": {"width": 256, "height": 256, "channels": CHANNELS, "pixels_type": "uint8"},
        },
        {
            "study": "idr0992-bench-zarr-bytes",
            "container": "screenA",
            "id": ZARR_BYTES_SCREEN,
            "plates": 1,
            "wells": [4, 5],
            "fields": [1, 1],
            "zarr": {"version": "0.4", "compressor": "blosc"},
            "image": {"width": 1024, "height": 1024, "channels": CHANNELS, "pixels_type": "uint16"},
        },
    ],
}


def zarr_main(sizes: tuple[int, ...]) -> int:
    from idrcell.emulator import load_catalogue
    from idrcell.emulator.pixels import PlaneCache
    from idrcell.emulator.zarr_store import CHUNK, ZarrTree, level_shapes

    with tempfile.TemporaryDirectory(prefix="bench-builder-zarr-") as tmp:
        workdir = Path(tmp)
        spec = workdir / "bench_zarr_catalogue.json"
        spec.write_text(json.dumps(ZARR_CATALOGUE))
        emulator = subprocess.Popen(
            [sys.executable, "-c", EMULATOR_SCRIPT, str(spec), "2026"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        throughput = ("idr0991-bench-zarr", "screenA", ZARR_SCREEN)
        big = ("idr0992-bench-zarr-bytes", "screenA", ZARR_BYTES_SCREEN)
        try:
            assert emulator.stdin is not None and emulator.stdout is not None
            base_url = emulator.stdout.readline().strip()
            warm = stage_run(workdir, base_url, max(sizes), "_warm", "zarr", throughput)
            zarr_bytes = stage_run(workdir, base_url, 20, "_bytes", "zarr", big)
            emulator.stdin.write(f"{LATENCY_S}\n")
            emulator.stdin.flush()
            assert emulator.stdout.readline().strip() == "ok"
            runs = {}
            for n in sizes:
                before = process_cpu_s(emulator.pid)
                runs[n] = stage_run(workdir, base_url, n, f"_z{n}", "zarr", throughput)
                runs[n]["emulator_cpu_s"] = process_cpu_s(emulator.pid) - before
        finally:
            emulator.kill()
            emulator.wait(timeout=30)
        # The render_image path's bytes for the same 20 images, from a classic-mode server.
        emulator = subprocess.Popen(
            [sys.executable, "-c", EMULATOR_SCRIPT, str(spec), "classic"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert emulator.stdout is not None
            base_url = emulator.stdout.readline().strip()
            render_bytes = stage_run(workdir, base_url, 20, "_render", "render", big)
        finally:
            emulator.kill()
            emulator.wait(timeout=30)
    # Full resolution: the level-0 chunks of the same planes (what a reader without pyramids fetches).
    catalogue = load_catalogue(ZARR_CATALOGUE)
    tree = ZarrTree(catalogue, PlaneCache(catalogue.seed))
    screen = next(c for c in catalogue.screens if c.id == ZARR_BYTES_SCREEN)
    images = catalogue.container_images(screen)[:5]
    full = []
    for image in images:
        plate = catalogue.plates[catalogue.wells[image.well_id].plate_id]
        well = catalogue.wells[image.well_id]
        root = f"v0.4/idr0992A/{plate.id}.zarr/{chr(65 + well.row)}/{well.column + 1}/0/0"
        height, width = level_shapes(image)[0]
        tiles = [(y, x) for y in range(-(-height // CHUNK)) for x in range(-(-width // CHUNK))]
        full.append(
            sum(
                len(tree.get(f"{root}/{c}/{image.default_z}/{y}/{x}") or b"")
                for c in range(CHANNELS)
                for y, x in tiles
            )
        )
    full_per_image = statistics.mean(full)
    zarr_per_image = zarr_bytes["result"]["downloaded_bytes"] / 20
    render_per_image = render_bytes["result"]["downloaded_bytes"] / 20

    largest = runs[max(sizes)]
    requests_per_image = largest["result"]["requests"] / max(sizes)
    ideal = CONCURRENCY / LATENCY_S / requests_per_image
    print(
        f"Zarr source against the emulator's 2026 mode, latency {LATENCY_S * 1000:.0f} ms, "
        f"concurrency {CONCURRENCY}"
    )
    print(f"warm-up at zero latency (cold emulator): {max(sizes) / warm['result']['elapsed_s']:.1f} images/s")
    for n, report in runs.items():
        result = report["result"]
        rate = n / result["elapsed_s"]
        print(
            f"  zarr stager, {n:5d} images (256 x 256 uint8, 2 channels): {result['elapsed_s']:6.1f} s, "
            f"{rate:6.1f} images/s, {result['requests'] / n:.2f} requests/image, "
            f"peak RSS {report['peak_rss_mb']:.0f} MB"
        )
    rate = max(sizes) / largest["result"]["elapsed_s"]
    print(
        f"ideal bound: {CONCURRENCY} / {LATENCY_S} s / {requests_per_image:.2f} requests = {ideal:.1f} "
        f"images/s; achieved {rate / ideal:.2f} of it"
    )
    cpu_per_image = (largest["cpu_s"] + largest["emulator_cpu_s"]) / max(sizes)
    cpu_bound = (os.cpu_count() or 1) / cpu_per_image
    print(
        f"CPU bound: {os.cpu_count()} cores / ({largest['cpu_s'] / max(sizes) * 1000:.1f} ms stager + "
        f"{largest['emulator_cpu_s'] / max(sizes) * 1000:.1f} ms emulator CPU per image) = {cpu_bound:.1f} "
        f"images/s; achieved {rate / min(ideal, cpu_bound):.2f} of the lower bound"
    )
    memory_ratio = largest["peak_rss_mb"] / runs[min(sizes)]["peak_rss_mb"]
    print(f"peak memory ratio, {max(sizes)} vs {min(sizes)} images: {memory_ratio:.2f} (target: flat, ~1)")
    print(
        f"bytes per stored image (1024 x 1024 uint16, 2 channels): Zarr path (level 2, 256 px) "
        f"{zarr_per_image / 1e3:.0f} kB (metadata included), render_image path (JPEG q=1.0, full size) "
        f"{render_per_image / 1e3:.0f} kB, full-resolution Zarr level {full_per_image / 1e3:.0f} kB "
        "(chunks only)"
    )
    return 0 if memory_ratio < 1.5 else 1


if __name__ == "__main__":
    if "--zarr" in sys.argv[1:]:
        chosen = SIZES
        for argument in sys.argv[1:]:
            if argument.startswith("--zarr-sizes="):
                chosen = tuple(int(v) for v in argument.split("=", 1)[1].split(","))
        sys.exit(zarr_main(chosen))
    sys.exit(main())
