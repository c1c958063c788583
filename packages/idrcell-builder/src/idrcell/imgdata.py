"""Read IDR's per-image metadata (`/webgateway/imgData/{id}/`) into a fetch plan and a sample record.

Every way an image can be unusable maps to one skip reason, so a summary can count them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from idrcell.experiments import Experiment
from idrcell.sampling import Candidate
from idrcell.shards import SCHEMA

# Skip reasons, recorded per image in the journal and counted in stage.json / dataset.json.
FORBIDDEN = "forbidden"  # HTTP 403: the public user may not read the image
NOT_FOUND = "not_found"  # HTTP 404
HTTP_ERROR = "http_error"  # other permanent 4xx
UNREADABLE_METADATA = "unreadable_metadata"
NO_CHANNELS = "no_channels"
TOO_MANY_CHANNELS = "too_many_channels"
MISSING_CHANNEL = "missing_channel"  # the list asks for a channel the image does not have
PLANE_OUT_OF_RANGE = "plane_out_of_range"
TOO_LARGE = "too_large"
UNDECODABLE_PIXELS = "undecodable_pixels"
RESPONSE_TOO_LARGE = "response_too_large"  # an answer past ClientConfig.max_response_bytes
OVERSIZED_PIXELS = "oversized_pixels"  # a JPEG declaring more pixels than the plane (a decompression bomb)
KEY_TOO_LONG = "key_too_long"  # an image id too long for the 88-character key (naming.sample_key)


@dataclass(frozen=True)
class ChannelPlan:
    index: int  # 1-based, as IDR numbers channels
    label: str | None
    emission_wavelength: float | None
    window: tuple[float, float] | None


@dataclass(frozen=True)
class ImagePlan:
    width: int
    height: int
    pixels_type: str | None
    z: int
    t: int
    channels: tuple[ChannelPlan, ...]
    # Values the server sent that are no finite number (NaN, Infinity, 1e400), stored as null.
    nulled: tuple[str, ...] = ()


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} characters)"


def _number(value: Any, where: str, nulled: list[str]) -> float | None:
    """A finite float, or None; a non-finite or overflowing number is noted in `nulled`.

    Python's json module reads NaN, Infinity and 1e400 (as inf) and an integer of 400 digits, none
    of which strict JSON can hold once written back as a float.
    """
    if isinstance(value, dict):  # some OMERO versions wrap quantities as {"value": ..., "unit": ...}
        value = value.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range
        number = math.inf
    if not math.isfinite(number):
        nulled.append(f"{where} is {_short(value)}, not a finite number")
        return None
    return number


def _window(channel: dict[str, Any], where: str, nulled: list[str]) -> tuple[float, float] | None:
    window = channel.get("window")
    if not isinstance(window, dict):
        return None
    start = _number(window.get("start"), f"{where} window.start", nulled)
    end = _number(window.get("end"), f"{where} window.end", nulled)
    return (start, end) if start is not None and end is not None else None


def describe_img_data(img_data: Any) -> str:
    """What imgData says of an image's size and channels: the detail logged when it is skipped."""
    size = img_data.get("size") if isinstance(img_data, dict) else None
    if not isinstance(size, dict):
        return "imgData has no size"
    channels = img_data.get("channels")
    count = len(channels) if isinstance(channels, list) else "no"
    return (
        f"imgData: {size.get('width')} x {size.get('height')} px, z {size.get('z')}, t {size.get('t')}, "
        f"{count} channels"
    )


def plan_image(img_data: Any, experiment: Experiment, max_channels: int, max_side: int) -> ImagePlan | str:
    """What to fetch for this image, or the reason to skip it."""
    if not isinstance(img_data, dict):
        return UNREADABLE_METADATA
    size, channels = img_data.get("size"), img_data.get("channels")
    if not isinstance(size, dict) or not isinstance(channels, list):
        return UNREADABLE_METADATA
    width, height = _int(size.get("width")), _int(size.get("height"))
    size_z, size_t, size_c = _int(size.get("z")) or 1, _int(size.get("t")) or 1, _int(size.get("c"))
    if width is None or height is None or width < 1 or height < 1:
        return UNREADABLE_METADATA
    if not channels or size_c == 0:
        return NO_CHANNELS
    if not all(isinstance(c, dict) for c in channels):
        return UNREADABLE_METADATA
    wanted = experiment.channels or tuple(range(1, len(channels) + 1))
    if any(index > len(channels) for index in wanted):
        return MISSING_CHANNEL
    if len(wanted) > max_channels:
        return TOO_MANY_CHANNELS
    rdefs = img_data.get("rdefs") if isinstance(img_data.get("rdefs"), dict) else {}
    z = experiment.z if experiment.z is not None else _int(rdefs.get("defaultZ")) or 0
    t = experiment.t if experiment.t is not None else _int(rdefs.get("defaultT")) or 0
    if not (0 <= z < size_z and 0 <= t < size_t):
        return PLANE_OUT_OF_RANGE
    if max(width, height) > max_side:
        return TOO_LARGE
    meta = img_data.get("meta") if isinstance(img_data.get("meta"), dict) else {}
    pixels_type = meta.get("pixelsType")
    plans = []
    nulled: list[str] = []
    for index in wanted:
        channel = channels[index - 1]
        label = channel.get("label")
        where = f"channel {index}"
        plans.append(
            ChannelPlan(
                index=index,
                label=label if isinstance(label, str) else None,
                emission_wavelength=_number(channel.get("emissionWave"), f"{where} emissionWave", nulled),
                window=_window(channel, where, nulled),
            )
        )
    return ImagePlan(
        width=width,
        height=height,
        pixels_type=pixels_type if isinstance(pixels_type, str) else None,
        z=z,
        t=t,
        channels=tuple(plans),
        nulled=tuple(nulled),
    )


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def channel_query(channel: ChannelPlan, jpeg_quality: str) -> list[tuple[str, str]]:
    """`c`, `m`, `q` of a render call showing one channel in grey through its window."""
    spec = str(channel.index)
    if channel.window is not None:
        spec += f"|{_format_number(channel.window[0])}:{_format_number(channel.window[1])}"
    return [("c", spec + "$FFFFFF"), ("m", "g"), ("q", jpeg_quality)]


def tiles_for(width: int, height: int, plane_limit: int, tile_size: int) -> list[tuple[int, int, int, int]]:
    """Regions `(x, y, w, h)` to fetch; one whole-plane region when the plane is within the limit."""
    if width <= plane_limit and height <= plane_limit:
        return [(0, 0, width, height)]
    return [
        (x, y, min(tile_size, width - x), min(tile_size, height - y))
        for y in range(0, height, tile_size)
        for x in range(0, width, tile_size)
    ]


def well_label(row: int | None, column: int | None) -> str | None:
    """`B03` for row 1, column 2 (OMERO stores both 0-based); letters go on A..Z, AA, AB, ..."""
    if row is None or column is None or row < 0 or column < 0:
        return None
    letters, value = "", row
    while True:
        letters = chr(ord("A") + value % 26) + letters
        value = value // 26 - 1
        if value < 0:
            break
    return f"{letters}{column + 1:02d}"


def sample_metadata(
    key: str,
    experiment: Experiment,
    candidate: Candidate,
    study_info: dict[str, str | None],
    plan: ImagePlan,
) -> dict[str, Any]:
    """The `KEY.json` record of the shard contract; unknown values are None, never guessed."""
    is_screen = experiment.kind == "screen"
    return {
        "schema": SCHEMA,
        "key": key,
        "study": experiment.study,
        "container": experiment.container,
        "image_id": candidate.image_id,
        "image_name": candidate.image_name,
        "plate": candidate.group_name if is_screen else None,
        "well": well_label(candidate.row, candidate.column) if is_screen else None,
        "field": candidate.field if is_screen else None,
        "dataset": None if is_screen else candidate.group_name,
        "imaging_method": study_info.get("imaging_method"),
        "organism": study_info.get("organism"),
        "cell_line": study_info.get("cell_line"),
        "n_channels": len(plan.channels),
        "channels": [
            {
                "index": c.index,
                "label": c.label,
                "emission_wavelength": c.emission_wavelength,
                "window": list(c.window) if c.window is not None else None,
            }
            for c in plan.channels
        ],
        "source": {
            "width": plan.width,
            "height": plan.height,
            "pixels_type": plan.pixels_type,
            "z": plan.z,
            "t": plan.t,
        },
    }
