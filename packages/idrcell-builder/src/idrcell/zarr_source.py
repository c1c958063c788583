"""The OME-Zarr pixel source: an image's channels read from its OME-Zarr copy instead of render_image.

Per image: sizes, pixel type and channel names from `/api/v0/m/images/{id}/` (falling back to
imgData where it answers without an `Exception`); the store from zarr_resolve.py; in it, the image's
multiscales (for a plate: the well at the image's row and column, and its field), axes from
`multiscales[0].axes` (`czyx`, `tczyx`, ...), the smallest pyramid level whose short side is still at
least 224 px, one plane per channel at (z, t), and each channel's window from the `omero` block.
The window maps [start, end] linearly to [0, 255] as OMERO's renderer does, and the 8-bit plane
then goes through the same resize and PNG encoding as a rendered JPEG (render.py), so both sources
give the same `idrcell-v1` samples; KEY.json records the Zarr level and the source dtype.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr.api.asynchronous as zarr_async

from idrcell.client import IDRClient
from idrcell.experiments import Experiment
from idrcell.imgdata import (
    MISSING_CHANNEL,
    NO_CHANNELS,
    PLANE_OUT_OF_RANGE,
    TOO_LARGE,
    TOO_MANY_CHANNELS,
    UNREADABLE_METADATA,
    ChannelPlan,
    ImagePlan,
)
from idrcell.render import IMAGE_SIZE, encode_png, resize_to_square
from idrcell.sampling import Candidate
from idrcell.zarr_http import ClientStore
from idrcell.zarr_limits import ZarrTooLarge, check_array
from idrcell.zarr_resolve import StoreLocation, ZarrResolver, ZarrSourceError

PIXEL_SOURCES = ("auto", "zarr", "render")
# Skip reasons of the Zarr source (counted like imgdata's).
NO_ZARR = "no_zarr"  # no OME-Zarr copy found for the image
UNREADABLE_ZARR = "unreadable_zarr"  # a store whose metadata breaks OME-NGFF (no multiscales, axes)
ZARR_MISMATCH = "zarr_mismatch"  # the store's image disagrees with the API (size, channels)
# declared sizes above zarr_limits' caps, or a chunk that decodes past its declared chunk shape
OVERSIZED_ZARR = "oversized_zarr"
PREFLIGHT_CANDIDATES = 5  # images of the order tried before an experiment is declared without Zarr


@dataclass(frozen=True)
class ZarrSkip:
    reason: str
    detail: str


@dataclass(frozen=True)
class ZarrSample:
    """What the stage writes: the plan (KEY.json), PNGs, and the extra `source` fields."""

    plan: ImagePlan
    pngs: list[bytes]
    source_extra: dict[str, Any]


def img_data_has_exception(img_data: Any) -> bool:
    """The 2026 IDR answers imgData with an `Exception` and no `size`: the server no longer renders."""
    return isinstance(img_data, dict) and "Exception" in img_data and "size" not in img_data


def window_to_uint8(plane: np.ndarray, start: float, end: float) -> np.ndarray:
    """[start, end] -> [0, 255], clipped, rounded: OMERO's linear rendering of one grey channel."""
    values = plane.astype(np.float32)
    if end <= start:
        scaled = (values >= end).astype(np.float32)
    else:
        scaled = np.clip((values - start) / (end - start), 0.0, 1.0)
    return np.rint(scaled * 255.0).astype(np.uint8)


def channel_pngs(planes: Sequence[np.ndarray], windows: Sequence[tuple[float, float]]) -> list[bytes]:
    """The stored PNGs of raw planes: window to 8 bits, then the render path's resize and encoding."""
    return [
        encode_png(resize_to_square(window_to_uint8(plane, *window), IMAGE_SIZE))
        for plane, window in zip(planes, windows, strict=True)
    ]


@dataclass(frozen=True)
class PixelsInfo:
    width: int
    height: int
    size_z: int
    size_t: int
    pixels_type: str | None
    labels: tuple[str | None, ...]
    emissions: tuple[float | None, ...]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _quantity(value: Any) -> float | None:
    if isinstance(value, dict):
        value = value.get("Value", value.get("value"))
    if isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value):
        return float(value)
    return None


def pixels_from_api(answer: Any) -> PixelsInfo | None:
    """The `Pixels` block of `/api/v0/m/images/{id}/`, or None when it lacks sizes or channels."""
    data = answer.get("data") if isinstance(answer, dict) else None
    pixels = data.get("Pixels") if isinstance(data, dict) else None
    if not isinstance(pixels, dict):
        return None
    width, height = _int(pixels.get("SizeX")), _int(pixels.get("SizeY"))
    channels = pixels.get("Channels")
    if width is None or height is None or not isinstance(channels, list):
        return None
    kind = pixels.get("Type")
    pixels_type = kind.get("value") if isinstance(kind, dict) else kind
    channels = [c if isinstance(c, dict) else {} for c in channels]
    return PixelsInfo(
        width=width,
        height=height,
        size_z=_int(pixels.get("SizeZ")) or 1,
        size_t=_int(pixels.get("SizeT")) or 1,
        pixels_type=pixels_type if isinstance(pixels_type, str) else None,
        labels=tuple(c.get("Name") if isinstance(c.get("Name"), str) else None for c in channels),
        emissions=tuple(_quantity(c.get("EmissionWavelength")) for c in channels),
    )


def pixels_from_img_data(img_data: Any) -> PixelsInfo | None:
    """The same from a classic imgData answer (the fallback), None for an `Exception` answer."""
    if not isinstance(img_data, dict) or img_data_has_exception(img_data):
        return None
    size, channels = img_data.get("size"), img_data.get("channels")
    if not isinstance(size, dict) or not isinstance(channels, list):
        return None
    width, height = _int(size.get("width")), _int(size.get("height"))
    if width is None or height is None:
        return None
    meta = img_data.get("meta") if isinstance(img_data.get("meta"), dict) else {}
    channels = [c if isinstance(c, dict) else {} for c in channels]
    return PixelsInfo(
        width=width,
        height=height,
        size_z=_int(size.get("z")) or 1,
        size_t=_int(size.get("t")) or 1,
        pixels_type=meta.get("pixelsType") if isinstance(meta.get("pixelsType"), str) else None,
        labels=tuple(c.get("label") if isinstance(c.get("label"), str) else None for c in channels),
        emissions=tuple(_quantity(c.get("emissionWave")) for c in channels),
    )


def _ome_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """OME-NGFF 0.5 nests its keys under `ome`; 0.4 keeps them at the top level."""
    nested = attrs.get("ome")
    return nested if isinstance(nested, dict) else attrs


def choose_level(shapes: Sequence[tuple[int, int]], min_side: int = IMAGE_SIZE) -> int:
    """The smallest level (by pixels) whose short side is >= min_side; level 0 if none is."""
    fitting = [i for i, (h, w) in enumerate(shapes) if min(h, w) >= min_side]
    return min(fitting, key=lambda i: shapes[i][0] * shapes[i][1]) if fitting else 0


class ZarrPixelSource:
    """Reads the sampled images of one experiment from their OME-Zarr copies."""

    def __init__(
        self,
        client: IDRClient,
        experiment: Experiment,
        base_url: str,
        max_channels: int,
        max_side: int,
        pool: Executor,
    ) -> None:
        self.client, self.experiment = client, experiment
        self.resolver = ZarrResolver(client, experiment, base_url)
        self.max_channels, self.max_side, self.pool = max_channels, max_side, pool
        self.order: list[Candidate] = []
        self._preflight: asyncio.Task[None] | None = None

    # ---- experiment level ------------------------------------------------------------------------
    async def preflight(self) -> None:
        """Fail the experiment, naming what was tried, when none of its first images has a store."""
        if self._preflight is None:
            self._preflight = asyncio.ensure_future(self._check_some_store())
        await asyncio.shield(self._preflight)

    async def _check_some_store(self) -> None:
        for candidate in self.order[:PREFLIGHT_CANDIDATES]:
            if await self.resolver.store_of(candidate) is not None:
                return
        if not self.order:
            return
        raise ZarrSourceError(
            f"{self.experiment.omero_name}: no OME-Zarr copy found for its first "
            f"{min(len(self.order), PREFLIGHT_CANDIDATES)} images under {self.resolver.base_url}; "
            f"tried {self.resolver.describe_tried()}"
        )

    # ---- image level ----------------------------------------------------------------------------
    async def read(self, candidate: Candidate) -> ZarrSample | ZarrSkip:
        await self.preflight()
        info = await self._pixels_info(candidate.image_id)
        if info is None:
            return ZarrSkip(
                UNREADABLE_METADATA,
                f"image {candidate.image_id}: no Pixels sizes in api/v0/m/images/{candidate.image_id}/ "
                "and none in webgateway/imgData (an Exception or no size)",
            )
        if info.width < 1 or info.height < 1:
            return ZarrSkip(
                UNREADABLE_METADATA, f"image {candidate.image_id}: {info.width} x {info.height} px"
            )
        tried: list[str] = []
        store = await self.resolver.store_of(candidate, tried)
        if store is None:
            return ZarrSkip(
                NO_ZARR, f"image {candidate.image_id}: no OME-Zarr copy found; tried {', '.join(tried)}"
            )
        try:
            group_path = await self._image_path(store, candidate)
            if isinstance(group_path, ZarrSkip):
                return group_path
            return await self._read_image(candidate, info, store, group_path)
        except ZarrSourceError:
            raise
        except ZarrTooLarge as error:
            return ZarrSkip(OVERSIZED_ZARR, f"image {candidate.image_id}: {error}"[:500])
        except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as error:
            # zarr's own errors for metadata or chunks that break the format (codec, shape, dtype)
            detail = f"image {candidate.image_id} in {store.url}: {type(error).__name__}: {error}"
            return ZarrSkip(UNREADABLE_ZARR, detail[:500])

    async def _pixels_info(self, image_id: int) -> PixelsInfo | None:
        info = pixels_from_api(await self.client.get_json(f"api/v0/m/images/{image_id}/"))
        if info is None:
            info = pixels_from_img_data(await self.client.get_json(f"webgateway/imgData/{image_id}/"))
        return info

    async def _read_attrs(self, url: str, zarr_format: int) -> dict[str, Any]:
        """A group's OME attributes: one GET of `.zattrs` (zarr v2) or `zarr.json` (v3).

        Read directly rather than through zarr's group open, which also fetches `.zgroup`: the
        builder needs only the attributes of groups, and zarr for the arrays."""
        name = ".zattrs" if zarr_format == 2 else "zarr.json"
        body = await self.client.get_bytes(f"{url}/{name}")
        if body is None:
            raise ValueError(f"{url}: no {name}")
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError(f"{url}/{name} is not a JSON object")
        attrs = document if zarr_format == 2 else document.get("attributes", {})
        return _ome_attrs(attrs if isinstance(attrs, dict) else {})

    async def _attrs(self, url: str, zarr_format: int) -> dict[str, Any]:
        """A plate's or well's OME attributes, read once per stage (many images share them)."""
        return await self.resolver.once("attrs " + url, lambda: self._read_attrs(url, zarr_format))

    async def _array(self, url: str, zarr_format: int) -> Any:
        return await zarr_async.open_array(
            store=ClientStore(self.client, url), mode="r", zarr_format=zarr_format
        )

    async def _image_path(self, store: StoreLocation, candidate: Candidate) -> str | ZarrSkip:
        """ "" for an image store; `<row>/<column>/<field>` of the candidate inside a plate store."""
        if self.experiment.kind != "screen":
            return ""
        attrs = await self._attrs(store.url, store.zarr_format)
        plate = attrs.get("plate")
        if not isinstance(plate, dict) or not isinstance(plate.get("wells"), list):
            return ZarrSkip(UNREADABLE_ZARR, f"{store.url}: no plate metadata")
        well = next(
            (
                w
                for w in plate["wells"]
                if isinstance(w, dict)
                and w.get("rowIndex") == candidate.row
                and w.get("columnIndex") == candidate.column
            ),
            None,
        )
        if well is None or not isinstance(well.get("path"), str):
            return ZarrSkip(
                NO_ZARR, f"{store.url}: no well at row {candidate.row}, column {candidate.column}"
            )
        well_attrs = await self._attrs(f"{store.url}/{well['path']}", store.zarr_format)
        images = (
            (well_attrs.get("well") or {}).get("images") if isinstance(well_attrs.get("well"), dict) else None
        )
        position = (candidate.field or 1) - 1
        if not isinstance(images, list) or position >= len(images) or not isinstance(images[position], dict):
            return ZarrSkip(NO_ZARR, f"{store.url}/{well['path']}: no field {position}")
        return f"{well['path']}/{images[position].get('path')}"

    async def _read_image(
        self, candidate: Candidate, info: PixelsInfo, store: StoreLocation, path: str
    ) -> ZarrSample | ZarrSkip:
        url = f"{store.url}/{path}" if path else store.url
        attrs = await self._read_attrs(url, store.zarr_format)  # the image's own: not cached
        multiscales = attrs.get("multiscales")
        try:
            axes = [
                str(axis["name"]) if isinstance(axis, dict) else str(axis) for axis in multiscales[0]["axes"]
            ]
            datasets = [str(d["path"]) for d in multiscales[0]["datasets"]]
        except (TypeError, KeyError, IndexError):
            return ZarrSkip(UNREADABLE_ZARR, f"{url}: no multiscales[0] axes and datasets")
        if not {"y", "x"} <= set(axes) or not datasets:
            return ZarrSkip(UNREADABLE_ZARR, f"{url}: axes {''.join(axes)} lack y or x")
        omero = attrs.get("omero") if isinstance(attrs.get("omero"), dict) else {}
        omero_channels = omero.get("channels") if isinstance(omero.get("channels"), list) else []
        rdefs = omero.get("rdefs") if isinstance(omero.get("rdefs"), dict) else {}
        plan = self._plan(info, omero_channels, rdefs)
        if isinstance(plan, str):
            return ZarrSkip(
                plan,
                f"image {candidate.image_id}: {info.width} x {info.height} px, z {info.size_z}, "
                f"t {info.size_t}, {len(info.labels)} channels",
            )
        level, array = await self._pick_level(
            url, store.zarr_format, datasets, axes, _scales(multiscales[0], axes), info
        )
        y_axis, x_axis = axes.index("y"), axes.index("x")
        if level == 0 and (array.shape[y_axis], array.shape[x_axis]) != (info.height, info.width):
            return ZarrSkip(
                ZARR_MISMATCH, f"{url}: {array.shape} does not match {info.width} x {info.height} px"
            )
        if "c" in axes and array.shape[axes.index("c")] < max(c.index for c in plan.channels):
            return ZarrSkip(ZARR_MISMATCH, f"{url}: fewer channels than the API's {len(info.labels)}")
        # Declared sizes first (ZarrTooLarge, ZarrUnbounded), then every chunk before it is decoded.
        level_url = f"{url}/{datasets[level]}"
        array.store_path.store.chunk_check = check_array(array, axes, len(plan.channels), level_url)
        planes = await asyncio.gather(*(self._plane(array, axes, plan, c.index - 1) for c in plan.channels))
        windows = [c.window or _full_range(plane) for c, plane in zip(plan.channels, planes, strict=True)]
        loop = asyncio.get_running_loop()
        pngs = await loop.run_in_executor(self.pool, channel_pngs, planes, windows)
        plan = ImagePlan(
            width=plan.width,
            height=plan.height,
            pixels_type=plan.pixels_type,
            z=plan.z,
            t=plan.t,
            channels=tuple(
                ChannelPlan(c.index, c.label, c.emission_wavelength, tuple(w))  # type: ignore[arg-type]
                for c, w in zip(plan.channels, windows, strict=True)
            ),
        )
        extra = {
            "pixel_source": "zarr",
            "dtype": str(np.dtype(array.dtype)),
            "zarr_level": level,
            "zarr_level_size": [int(array.shape[x_axis]), int(array.shape[y_axis])],
        }
        return ZarrSample(plan, pngs, extra)

    def _plan(self, info: PixelsInfo, omero_channels: list[Any], rdefs: dict[str, Any]) -> ImagePlan | str:
        """The same checks and defaults as imgdata.plan_image, on API sizes and the omero block."""
        count = len(info.labels)
        if count == 0:
            return NO_CHANNELS
        wanted = self.experiment.channels or tuple(range(1, count + 1))
        if any(index > count for index in wanted):
            return MISSING_CHANNEL
        if len(wanted) > self.max_channels:
            return TOO_MANY_CHANNELS
        # Default plane: the omero block's rdefs, else the middle z and the first t (docs/builder.md).
        z = self.experiment.z if self.experiment.z is not None else _int(rdefs.get("defaultZ"))
        t = self.experiment.t if self.experiment.t is not None else _int(rdefs.get("defaultT"))
        z = info.size_z // 2 if z is None else z
        t = 0 if t is None else t
        if z >= info.size_z or t >= info.size_t:
            return PLANE_OUT_OF_RANGE
        if max(info.width, info.height) > self.max_side:
            return TOO_LARGE
        channels = []
        for index in wanted:
            omero = omero_channels[index - 1] if index - 1 < len(omero_channels) else {}
            window = omero.get("window") if isinstance(omero, dict) else None
            start = _quantity(window.get("start")) if isinstance(window, dict) else None
            end = _quantity(window.get("end")) if isinstance(window, dict) else None
            label = info.labels[index - 1]
            if label is None and isinstance(omero, dict) and isinstance(omero.get("label"), str):
                label = omero["label"]
            channels.append(
                ChannelPlan(
                    index=index,
                    label=label,
                    emission_wavelength=info.emissions[index - 1],
                    window=(start, end) if start is not None and end is not None else None,
                )
            )
        return ImagePlan(info.width, info.height, info.pixels_type, z, t, tuple(channels))

    async def _pick_level(
        self,
        url: str,
        zarr_format: int,
        datasets: list[str],
        axes: list[str],
        scales: list[tuple[float, float]] | None,
        info: PixelsInfo,
    ) -> tuple[int, Any]:
        """The smallest level with a short side >= 224 px.

        The levels' sizes follow from the full size (API) and each level's y/x scale, so usually one
        array's metadata is read; without scales, or when rounding misleads, levels are opened from
        the smallest up."""
        y_axis, x_axis = axes.index("y"), axes.index("x")
        start = len(datasets) - 1
        if scales is not None and len(scales) == len(datasets):
            (y0, x0) = scales[0]
            shapes = [(int(info.height * y0 / y), int(info.width * x0 / x)) for y, x in scales]
            start = choose_level(shapes)
            array = await self._array(f"{url}/{datasets[start]}", zarr_format)
            if min(array.shape[y_axis], array.shape[x_axis]) >= IMAGE_SIZE or start == 0:
                return start, array
        for level in range(start, -1, -1):
            array = await self._array(f"{url}/{datasets[level]}", zarr_format)
            if min(array.shape[y_axis], array.shape[x_axis]) >= IMAGE_SIZE or level == 0:
                return level, array
        raise AssertionError("unreachable: level 0 always returns")

    async def _plane(self, array: Any, axes: list[str], plan: ImagePlan, channel: int) -> np.ndarray:
        selection: list[Any] = []
        for axis in axes:
            if axis in ("y", "x"):
                selection.append(slice(None))
            else:
                selection.append({"t": plan.t, "c": channel, "z": plan.z}.get(axis, 0))
        return np.asarray(await array.getitem(tuple(selection)))


def _scales(multiscale: dict[str, Any], axes: list[str]) -> list[tuple[float, float]] | None:
    """Each level's (y, x) scale from its `coordinateTransformations`, or None when one lacks it."""
    y_axis, x_axis = axes.index("y"), axes.index("x")
    scales = []
    for dataset in multiscale.get("datasets", []):
        transforms = dataset.get("coordinateTransformations") if isinstance(dataset, dict) else None
        scale = next(
            (t.get("scale") for t in transforms or [] if isinstance(t, dict) and t.get("type") == "scale"),
            None,
        )
        if not isinstance(scale, list) or len(scale) != len(axes):
            return None
        y, x = _quantity(scale[y_axis]), _quantity(scale[x_axis])
        if not y or not x or y <= 0 or x <= 0:
            return None
        scales.append((y, x))
    return scales


def _full_range(plane: np.ndarray) -> tuple[float, float]:
    """A window for a channel the omero block leaves without one: the plane's own min and max."""
    return (float(plane.min()), float(plane.max())) if plane.size else (0.0, 1.0)
