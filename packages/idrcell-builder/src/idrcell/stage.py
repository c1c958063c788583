"""Stage one experiment: list it, sample it, fetch and render its images into its staging folder.

One experiment is one independent, resumable job that writes only `OUT/staging/<study>_<container>/`
(see journal.py); `merge` combines finished stages into shards.

Selection is exact and order-free: the stage keeps the first `n_images` *usable* images of the
balanced order. Images are fetched concurrently, but a new one is started only while
`staged + in flight + failed < n_images`, so the set of images looked at is always the prefix of the
order that ends at the n-th usable image, whatever order downloads finish in, and a resumed stage
(whose journal resolves most of that prefix instantly) ends with the same selection. An image that
keeps failing transiently keeps its slot; the stage then ends incomplete and a rerun retries it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from idrcell import __version__
from idrcell.atomic import atomic_write_bytes
from idrcell.client import ClientConfig, IDRClient, PermanentHTTPError, ResponseTooLarge, TransientFailure
from idrcell.dataset import check_output_dir
from idrcell.experiments import Experiment, experiment_seed
from idrcell.imgdata import (
    FORBIDDEN,
    HTTP_ERROR,
    KEY_TOO_LONG,
    NOT_FOUND,
    OVERSIZED_PIXELS,
    RESPONSE_TOO_LARGE,
    UNDECODABLE_PIXELS,
    ImagePlan,
    channel_query,
    describe_img_data,
    plan_image,
    sample_metadata,
    tiles_for,
)
from idrcell.journal import JournalEntry, StagingDir, stage_dir
from idrcell.listing import ExperimentListing, cached_listing
from idrcell.naming import KeyTooLongError, sample_key
from idrcell.render import OversizedImageError, PixelError, render_channel
from idrcell.sampling import Candidate, balanced_order
from idrcell.shards import sample_members, tar_bytes
from idrcell.testpoint import counted_write
from idrcell.zarr_resolve import DEFAULT_ZARR_BASE_URL
from idrcell.zarr_source import ZarrPixelSource, ZarrSkip, img_data_has_exception

logger = logging.getLogger(__name__)
T = TypeVar("T")
NULLED = "nulled"  # a failures.jsonl status: staged, with server values that are no number stored as null


@dataclass(frozen=True)
class StageConfig:
    seed: int = 0
    # IDRCell100k keeps images of up to 10 channels (issue 4; the paper's images have 1 to 10).
    max_channels: int = 10
    client: ClientConfig = field(default_factory=ClientConfig)
    # IDR refuses render_image for planes above ~3,000 px (docs/idr-api.md): fetch those in tiles.
    plane_limit: int = 3000
    tile_size: int = 2000
    max_side: int = 16384  # larger planes are skipped: resizing them to 224 px would need GBs
    jpeg_quality: str = "1.0"
    images_in_flight: int = 0  # 0: twice the client's concurrency, enough to keep every slot busy
    # Threads that decode, resize, encode and write samples off the event loop; they spend much of
    # their time in C code that releases the GIL (JPEG decode, resampling, zlib) or waiting on fsync.
    cpu_workers: int = 4
    # Where pixels come from (zarr_source.py): "auto" renders where imgData answers sizes and reads
    # OME-Zarr where it answers an Exception (the 2026 IDR); "zarr" or "render" force one source.
    pixel_source: str = "auto"
    zarr_base_url: str = DEFAULT_ZARR_BASE_URL

    def output_params(self, experiment: Experiment) -> dict[str, Any]:
        """Everything that changes a stage's output bytes (not URLs, timeouts or concurrency)."""
        params = {
            "experiment": experiment.to_row(),
            "seed": self.seed,
            "max_channels": self.max_channels,
            "plane_limit": self.plane_limit,
            "tile_size": self.tile_size,
            "max_side": self.max_side,
            "jpeg_quality": self.jpeg_quality,
        }
        if self.pixel_source != "auto":  # recorded only when set, so auto stages keep their bytes
            params["pixel_source"] = self.pixel_source
        return params


@dataclass(frozen=True)
class StageProgress:
    name: str
    phase: str  # "listing" | "fetching" | "done"
    target: int
    staged: int = 0
    skipped: int = 0
    failed: int = 0
    candidates: int = 0


ProgressCallback = Callable[[StageProgress], None]


@dataclass(frozen=True)
class StageResult:
    name: str
    study: str
    container: str
    requested: int
    selected: int
    candidates: int
    skipped: dict[str, int]
    failed: int
    complete: bool
    already_done: bool
    listing_cached: bool = False
    channels: int = 0
    sample_bytes: int = 0
    requests: int = 0
    downloaded_bytes: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    error: str | None = None  # set when the stage could not run at all (bad id, server down)
    nulled: int = 0  # staged images with server values stored as null (stage.json `nulled_values`)

    @property
    def short(self) -> bool:
        return self.complete and self.selected < self.requested


@dataclass(frozen=True)
class _Staged:
    candidate: Candidate
    key: str
    n_channels: int
    nbytes: int
    nulled: tuple[str, ...] = ()  # server values stored as null (imgdata.ImagePlan.nulled)


@dataclass(frozen=True)
class _Skipped:
    candidate: Candidate
    reason: str
    detail: str


@dataclass(frozen=True)
class _Failed:
    candidate: Candidate
    detail: str


_Outcome = _Staged | _Skipped | _Failed


async def _gather_or_cancel(coroutines: Iterable[Awaitable[T]]) -> list[T]:
    """Like gather, but the first error cancels the siblings (no orphan downloads keep a slot)."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class _ImageFetcher:
    """Fetches, renders and stages one image at a time (many at once on one event loop)."""

    def __init__(
        self,
        client: IDRClient,
        experiment: Experiment,
        listing: ExperimentListing,
        staging: StagingDir,
        config: StageConfig,
        pool: Executor,
    ) -> None:
        self.client, self.experiment, self.listing = client, experiment, listing
        self.staging, self.config, self.pool = staging, config, pool
        self.zarr = (
            None
            if config.pixel_source == "render"
            else ZarrPixelSource(
                client, experiment, config.zarr_base_url, config.max_channels, config.max_side, pool
            )
        )

    async def _from_zarr(self, candidate: Candidate) -> _Outcome:
        assert self.zarr is not None
        read = await self.zarr.read(candidate)
        if isinstance(read, ZarrSkip):
            return _Skipped(candidate, read.reason, read.detail)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.pool, self._write_sample, candidate, read.plan, read.pngs, read.source_extra
        )

    async def __call__(self, candidate: Candidate) -> _Outcome:
        try:  # before any request: an image whose key would break the contract is never fetched
            sample_key(self.experiment.study, self.experiment.container, candidate.image_id)
        except KeyTooLongError as error:
            return _Skipped(candidate, KEY_TOO_LONG, str(error))
        try:
            if self.zarr is not None and self.config.pixel_source == "zarr":
                return await self._from_zarr(candidate)
            img_data = await self.client.get_json(f"webgateway/imgData/{candidate.image_id}/")
            if self.zarr is not None and img_data_has_exception(img_data):
                return await self._from_zarr(candidate)
            plan = plan_image(img_data, self.experiment, self.config.max_channels, self.config.max_side)
            if isinstance(plan, str):
                return _Skipped(candidate, plan, describe_img_data(img_data))
            pngs = await _gather_or_cancel(
                self._channel_png(candidate.image_id, plan, c) for c in plan.channels
            )
        except PermanentHTTPError as error:
            reason = {403: FORBIDDEN, 404: NOT_FOUND}.get(error.status, HTTP_ERROR)
            return _Skipped(candidate, reason, str(error))
        except PixelError as error:
            reason = OVERSIZED_PIXELS if isinstance(error, OversizedImageError) else UNDECODABLE_PIXELS
            return _Skipped(candidate, reason, f"image {candidate.image_id}: {error}")
        except ResponseTooLarge as error:
            return _Skipped(candidate, RESPONSE_TOO_LARGE, str(error))
        except TransientFailure as error:
            return _Failed(candidate, str(error))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self._write_sample, candidate, plan, pngs)

    def _write_sample(
        self,
        candidate: Candidate,
        plan: ImagePlan,
        pngs: list[bytes],
        source_extra: dict[str, Any] | None = None,
    ) -> _Staged:
        """Write the sample file (in the pool: its fsync must not stall the event loop)."""
        key = sample_key(self.experiment.study, self.experiment.container, candidate.image_id)
        meta = sample_metadata(key, self.experiment, candidate, self.listing.study_info, plan)
        if source_extra:  # Zarr-sourced samples only: render-sourced KEY.json keep their bytes
            meta["source"].update(source_extra)
        data = tar_bytes(sample_members(key, meta, pngs))
        with counted_write("staged"):  # tests only: a kill test's pause point (testpoint.py)
            atomic_write_bytes(self.staging.sample_path(candidate.image_id), data)
        return _Staged(candidate, key, len(pngs), len(data), plan.nulled)

    async def _channel_png(self, image_id: int, plan: ImagePlan, channel: Any) -> bytes:
        query = channel_query(channel, self.config.jpeg_quality)
        regions = tiles_for(plan.width, plan.height, self.config.plane_limit, self.config.tile_size)
        if len(regions) == 1:
            path = f"webgateway/render_image/{image_id}/{plan.z}/{plan.t}/"
            jpegs = [await self.client.get_jpeg(path, query)]
        else:
            path = f"webgateway/render_image_region/{image_id}/{plan.z}/{plan.t}/"
            jpegs = await _gather_or_cancel(
                self.client.get_jpeg(path, [("region", f"{x},{y},{w},{h}"), *query]) for x, y, w, h in regions
            )
        tiles = [(x, y, jpeg) for (x, y, _, _), jpeg in zip(regions, jpegs, strict=True)]
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.pool, render_channel, tiles, plan.width, plan.height)
        except PixelError as error:  # name the channel: the caller names the image
            raise type(error)(f"channel {channel.index}: {error}") from None


def _stage_summary(
    experiment: Experiment,
    config: StageConfig,
    listing: ExperimentListing,
    order: list[Candidate],
    staging: StagingDir,
) -> dict[str, Any]:
    """stage.json: the selection in sampling order and its counts (deterministic: no clocks)."""
    samples: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for candidate in order:
        entry = staging.entries.get(candidate.image_id)
        if entry is None:
            continue
        if entry.status == "staged":
            size = staging.sample_path(candidate.image_id).stat().st_size
            samples.append(
                {"key": entry.key, "image_id": entry.image_id, "n_channels": entry.n_channels, "bytes": size}
            )
        else:
            skipped[entry.reason] += 1
    return {
        "builder": f"idrcell {__version__}",
        "experiment": experiment.to_row(),
        "name": experiment.name,
        "params": config.output_params(experiment),
        "container_id": listing.container_id,
        "study_info": listing.study_info,
        "requested": experiment.n_images,
        "candidates": len(order),
        "selected": len(samples),
        "skipped": dict(sorted(skipped.items())),
        "nulled_values": _nulled_images(staging, {s["image_id"] for s in samples}),
        "samples": samples,
    }


def _result_from_summary(summary: dict[str, Any], already_done: bool, **extra: Any) -> StageResult:
    row = summary["experiment"]
    return StageResult(
        name=summary["name"],
        study=row["study"],
        container=row["container"],
        requested=summary["requested"],
        selected=summary["selected"],
        candidates=summary["candidates"],
        skipped=summary["skipped"],
        failed=0,
        complete=True,
        already_done=already_done,
        channels=sum(s["n_channels"] for s in summary["samples"]),
        sample_bytes=sum(s["bytes"] for s in summary["samples"]),
        nulled=summary.get("nulled_values", 0),  # absent from the stage.json of older builders
        **extra,
    )


async def _watch_parent(parent_pid: int) -> None:
    """End this worker if the build that started it died (e.g. SIGKILL), so no orphan keeps writing."""
    while True:
        if os.getppid() != parent_pid:
            os._exit(70)
        await asyncio.sleep(0.2)


async def stage_experiment_async(
    experiment: Experiment,
    out: os.PathLike[str] | str,
    config: StageConfig = StageConfig(),
    progress: ProgressCallback | None = None,
    parent_pid: int | None = None,
) -> StageResult:
    """Run (or resume) one experiment's stage; returns what it did. Raises on unusable input."""
    check_output_dir(out)  # an OutputDirError (ValueError) is bad input: HTCondor holds the job
    staging = stage_dir(out, experiment.name)
    report = progress or (lambda _event: None)
    started = time.monotonic()
    watchdog = asyncio.create_task(_watch_parent(parent_pid)) if parent_pid is not None else None
    created = not staging.path.exists()
    try:
        with staging.locked():
            params = config.output_params(experiment)
            staging.check_params(params, record=False)
            if not staging.params_file.exists():  # a listing cached by a run killed before it recorded them
                staging.listing_file.unlink(missing_ok=True)
            finished = staging.read_stage()
            if finished is not None:
                result = _result_from_summary(finished, already_done=True)
                report(
                    StageProgress(
                        experiment.name,
                        "done",
                        result.requested,
                        result.selected,
                        sum(result.skipped.values()),
                    )
                )
                return result
            report(StageProgress(experiment.name, "listing", experiment.n_images))
            client_config = config.client
            async with IDRClient(client_config) as client:
                listing, from_cache = await cached_listing(client, experiment, staging.listing_file)
                staging.check_params(params)
                order = balanced_order(
                    listing.candidates, experiment_seed(config.seed, experiment.study, experiment.container)
                )
                staging.open_journal()
                with ThreadPoolExecutor(config.cpu_workers, thread_name_prefix="idrcell-pixels") as pool:
                    fetch = _ImageFetcher(client, experiment, listing, staging, config, pool)
                    if fetch.zarr is not None:
                        fetch.zarr.order = order
                        if config.pixel_source == "zarr":
                            await fetch.zarr.preflight()
                    failed = await _run_window(experiment, order, staging, fetch, config, report)
                stats = client.stats
            extra = {
                "listing_cached": from_cache,
                "requests": stats.requests,
                "downloaded_bytes": stats.bytes,
                "retries": dict(stats.retries),
                "elapsed_s": time.monotonic() - started,
            }
            summary = _stage_summary(experiment, config, listing, order, staging)
            if failed:
                return StageResult(
                    name=experiment.name,
                    study=experiment.study,
                    container=experiment.container,
                    requested=experiment.n_images,
                    selected=summary["selected"],
                    candidates=len(order),
                    skipped=summary["skipped"],
                    failed=failed,
                    complete=False,
                    already_done=False,
                    nulled=summary["nulled_values"],
                    **extra,
                )
            if not summary["selected"]:
                _forget_stage(staging)
                raise EmptyStageError(_why_empty(experiment, listing, summary, staging))
            staging.write_stage(summary)
            return _result_from_summary(summary, already_done=False, **extra)
    except BaseException:
        if created:  # e.g. an unknown study: leave no empty staging folder behind
            staging.remove_if_unused()
        raise
    finally:
        if watchdog is not None:
            watchdog.cancel()


async def _run_window(
    experiment: Experiment,
    order: list[Candidate],
    staging: StagingDir,
    fetch: _ImageFetcher,
    config: StageConfig,
    report: ProgressCallback,
) -> int:
    """Walk the order with a bounded window of images in flight; return how many failed."""
    target = experiment.n_images
    max_in_flight = config.images_in_flight or 2 * config.client.concurrency
    staged = skipped = failed = 0
    in_flight: set[asyncio.Task[_Outcome]] = set()
    position = 0

    def event() -> StageProgress:
        return StageProgress(experiment.name, "fetching", target, staged, skipped, failed, len(order))

    report(event())
    try:
        while True:
            while (
                position < len(order)
                and staged + failed + len(in_flight) < target
                and len(in_flight) < max_in_flight
            ):
                candidate = order[position]
                position += 1
                entry = staging.entries.get(candidate.image_id)
                if entry is not None:  # resolved by an earlier run: no download
                    staged += entry.status == "staged"
                    skipped += entry.status == "skipped"
                    continue
                in_flight.add(asyncio.create_task(fetch(candidate)))
            if not in_flight:
                break
            done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                outcome = task.result()
                image_id = outcome.candidate.image_id
                if isinstance(outcome, _Staged):
                    if outcome.nulled:  # logged before the journal line, so a kill cannot lose it
                        _log_nulled(staging, image_id, outcome.nulled)
                    staging.record(
                        JournalEntry(image_id, "staged", key=outcome.key, n_channels=outcome.n_channels)
                    )
                    staged += 1
                elif isinstance(outcome, _Skipped):
                    staging.record(JournalEntry(image_id, "skipped", reason=outcome.reason))
                    staging.log_failure(
                        {
                            "image_id": image_id,
                            "status": "skipped",
                            "reason": outcome.reason,
                            "detail": outcome.detail,
                        }
                    )
                    skipped += 1
                else:
                    staging.log_failure({"image_id": image_id, "status": "failed", "detail": outcome.detail})
                    failed += 1
            report(event())
    finally:
        for task in in_flight:
            task.cancel()
    report(StageProgress(experiment.name, "done", target, staged, skipped, failed, len(order)))
    return failed


class EmptyStageError(ValueError):
    """An experiment that yields no sample: bad input for that experiment, never a success."""


def _why_empty(
    experiment: Experiment, listing: ExperimentListing, summary: dict[str, Any], staging: StagingDir
) -> str:
    if not summary["candidates"]:
        dropped = listing.describe_dropped()
        return (
            f"{experiment.omero_name}: no usable image: the server lists no image under "
            f"{experiment.kind} {listing.container_id}" + (f"; {dropped}" if dropped else "")
        )
    reasons = ", ".join(f"{reason} {count}" for reason, count in summary["skipped"].items())
    return (
        f"{experiment.omero_name}: none of its {summary['candidates']} images is usable "
        f"(skipped: {reasons}); the reason of each is in {staging.failures_file}"
    )


def _forget_stage(staging: StagingDir) -> None:
    """Drop what a stage that yielded nothing recorded, but its failures log: a corrected list row
    then starts afresh instead of being refused as staged with other parameters."""
    staging.close_journal()
    for path in (staging.params_file, staging.listing_file, staging.journal_file):
        path.unlink(missing_ok=True)


def _log_nulled(staging: StagingDir, image_id: int, nulled: tuple[str, ...]) -> None:
    detail = "; ".join(nulled)
    logger.warning("image %d: stored as null: %s", image_id, detail)
    staging.log_failure(
        {"image_id": image_id, "status": NULLED, "reason": "non_finite_number", "detail": detail}
    )


def _nulled_images(staging: StagingDir, staged: set[int]) -> int:
    """Staged images with values stored as null, from failures.jsonl (each counted once)."""
    if not staging.failures_file.exists():
        return 0
    found = set()
    for line in staging.failures_file.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut by a kill
            continue
        if isinstance(record, dict) and record.get("status") == NULLED:
            found.add(record.get("image_id"))
    return len(found & staged)


def stage_experiment(
    experiment: Experiment,
    out: os.PathLike[str] | str,
    config: StageConfig = StageConfig(),
    progress: ProgressCallback | None = None,
    parent_pid: int | None = None,
) -> StageResult:
    """Blocking wrapper of `stage_experiment_async` for scripts and worker processes."""
    return asyncio.run(stage_experiment_async(experiment, out, config, progress, parent_pid))
