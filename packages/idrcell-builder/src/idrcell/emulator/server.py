"""An offline, IDR-compatible aiohttp server honouring docs/idr-api.md.

`create_app` builds the aiohttp application; `EmulatorServer` runs it in a background thread (for
tests and the builder's demo) or in the foreground (the `idrcell emulator` command). Pixels are
synthesised lazily and rendered in a small thread pool, so slow renders and injected timeouts never
block the event loop.

Two modes: `classic` serves the IDR's classic web API (imgData with sizes, render_image JPEGs);
`2026` behaves as the IDR does since its move to OME-Zarr: render_image and render_image_region
answer 403 with an empty body and imgData answers an `Exception` without `size`, while the JSON API,
render_thumbnail and the OME-Zarr stores under `/idr/zarr/` (zarr_store.py) keep working. The stores
are served in both modes, so one server can feed both pixel sources of the builder.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import threading
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import web
from PIL import Image as PILImage

from idrcell.emulator import marshal
from idrcell.emulator.catalogue import Catalogue, Container, Image, load_catalogue
from idrcell.emulator.faults import FaultConfig, draw_fault
from idrcell.emulator.pixels import PlaneCache
from idrcell.emulator.render import (
    RenderRequestError,
    default_settings,
    encode_jpeg,
    parse_channels,
    parse_mode,
    parse_quality,
    parse_region,
    render_rgb,
)
from idrcell.emulator.zarr_store import ZarrTree, list_bucket_xml

logger = logging.getLogger(__name__)

API_VERSION = "0.2"
SESSION_COOKIE = "sessionid_idr"
DEFAULT_LIMIT = 200  # OMERO.web's omero.web.api.limit default
DEFAULT_MAX_LIMIT = 500  # OMERO.web's omero.web.api.max_limit default (IDR uses 1000)
# Reachable without a session; the object store (zarr, bucket) is another service that has none.
_PUBLIC_ROUTES = frozenset({"session", "api_root", "api_versions", "zarr", "bucket"})
MODES: tuple[str, ...] = ("classic", "2026")
BUCKET = "idr"  # the object store's bucket; stores live under /<bucket>/zarr/ (path-style, as EBI's S3)
THUMBNAIL_SIZE = 96  # render_thumbnail's default longest side (the IDR's 96 x 96 thumbnails)
# The message of imgData in 2026 mode: the live text is not public; the shape (200, `Exception`, no
# `size`) is what the 2026 guide measured.
IMG_DATA_EXCEPTION = "This image can no longer be rendered by the viewer; its pixels are served as OME-Zarr."

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class EmulatorStats:
    """A snapshot of what the emulator saw and did."""

    requests: dict[str, int]  # per route name ("unmatched" for unknown paths)
    faults: dict[str, int]  # injected faults per kind
    statuses: dict[int, int]  # responses per HTTP status
    urls: dict[str, int]  # requests per exact path and query
    user_agents: dict[str, int]
    sessions: int  # session cookies issued


class _Recorder:
    """Counters shared between the server thread (writes) and callers (snapshots)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests: Counter[str] = Counter()
            self.faults: Counter[str] = Counter()
            self.statuses: Counter[int] = Counter()
            self.urls: Counter[str] = Counter()
            self.user_agents: Counter[str] = Counter()
            self.sessions = 0

    def request(self, route: str, url: str, user_agent: str) -> None:
        with self._lock:
            self.requests[route] += 1
            self.urls[url] += 1
            self.user_agents[user_agent] += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def status(self, status: int) -> None:
        with self._lock:
            self.statuses[status] += 1

    def session(self) -> None:
        with self._lock:
            self.sessions += 1

    def snapshot(self) -> EmulatorStats:
        with self._lock:
            return EmulatorStats(
                dict(self.requests),
                dict(self.faults),
                dict(self.statuses),
                dict(self.urls),
                dict(self.user_agents),
                self.sessions,
            )


def _json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"message": message, **extra}, status=status)


_NGINX_PAGE = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def _gateway_error(status: int) -> web.Response:
    """The HTML page IDR's nginx answers when its backend fails (502) or takes too long (504)."""
    reason = "Bad Gateway" if status == 502 else "Gateway Time-out"
    return web.Response(
        status=status, text=_NGINX_PAGE.format(code=status, reason=reason), content_type="text/html"
    )


class _Emulator:
    """Handlers and middlewares over one catalogue; lives on the server's event loop."""

    def __init__(
        self,
        catalogue: Catalogue,
        faults: FaultConfig,
        max_limit: int,
        require_session: bool,
        recorder: _Recorder,
        plane_cache_bytes: int,
        render_threads: int,
        mode: str = "classic",
        zarr_listing: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.catalogue = catalogue
        self.mode = mode
        self.zarr_listing = zarr_listing
        self.faults = faults
        self.max_limit = max_limit
        self.require_session = require_session
        self.recorder = recorder
        self.planes = PlaneCache(catalogue.seed, plane_cache_bytes)
        self.zarr = ZarrTree(catalogue, self.planes)
        self.pool = concurrent.futures.ThreadPoolExecutor(
            render_threads, thread_name_prefix="emulator-render"
        )
        self.sessions: set[str] = set()
        self.attempts: Counter[str] = Counter()
        self.screen_by_id = {item.id: item for item in catalogue.screens}
        self.project_by_id = {item.id: item for item in catalogue.projects}

    # ---- middlewares -------------------------------------------------------------------------
    @web.middleware
    async def observe(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count the request; turn every error into OMERO-style JSON."""
        route = request.match_info.route.name or "unmatched"
        self.recorder.request(route, request.path_qs, request.headers.get("User-Agent", ""))
        try:
            response = await handler(request)
        except web.HTTPException as error:
            if error.status < 400:  # e.g. the trailing-slash redirect
                response = web.Response(status=error.status, headers=error.headers, text=error.text)
            else:
                response = _json_error(error.status, error.reason if error.status != 404 else "Not found")
        except Exception as error:
            logger.exception("emulator handler failed for %s", request.path_qs)
            response = _json_error(500, str(error) or type(error).__name__, stacktrace=traceback.format_exc())
        self.recorder.status(response.status)
        return response

    @web.middleware
    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Added latency and deterministic transient faults (see faults.py)."""
        config = self.faults  # read once: set_faults may swap it from another thread
        if config.latency_s > 0:
            await asyncio.sleep(config.latency_s)
        route = request.match_info.route.name
        if route is None or config.rate <= 0:
            return await handler(request)
        key = f"{request.method} {request.path_qs}"
        attempt = self.attempts[key]
        self.attempts[key] += 1
        kind = draw_fault(config, route, key, attempt)
        if kind is None:
            return await handler(request)
        if kind == "timeout":
            # IDR's gateway gives up on a slow backend with a 504: a stalled request never ends in
            # a real answer, so it is a retry for the client even when its own timeout is longer.
            self.recorder.fault(kind)
            await asyncio.sleep(config.timeout_sleep_s)
            return _gateway_error(504)
        if kind == "truncated":
            return await self._truncated(request, handler)
        self.recorder.fault(kind)
        if kind == "500":
            stack = (
                "Traceback (most recent call last):\n  ...\nomero.InternalException: injected by the emulator"
            )
            return _json_error(500, "Internal error (injected by the emulator)", stacktrace=stack)
        if kind in ("502", "504"):
            return _gateway_error(int(kind))
        if kind == "429":
            return web.Response(
                status=429, text="Too Many Requests\n", headers={"Retry-After": str(config.retry_after_s)}
            )
        return web.json_response({"ConcurrencyException": {"backOff": config.backoff_ms}})  # "concurrency"

    async def _truncated(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Announce the full JPEG length, send half of it, then drop the connection."""
        response = await handler(request)
        if response.status != 200 or not isinstance(response, web.Response) or not response.body:
            return response  # nothing to cut: the fault does not apply to this answer
        self.recorder.fault("truncated")
        body = bytes(response.body)
        stream = web.StreamResponse(status=200, headers={"Content-Type": response.content_type})
        stream.content_length = len(body)
        await stream.prepare(request)
        await stream.write(body[: len(body) // 2])
        if request.transport is not None:
            request.transport.close()
        return stream

    @web.middleware
    async def session_check(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.name
        if (
            self.require_session
            and route is not None
            and route not in _PUBLIC_ROUTES
            and request.cookies.get(SESSION_COOKIE) not in self.sessions
        ):
            return _json_error(403, "Not logged in")
        return await handler(request)

    # ---- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _base(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    @staticmethod
    def _query_int(request: web.Request, name: str, default: int) -> int:
        value = request.query.get(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError as error:  # the JSON API reports Python's own message (json-api.rst)
            raise _BadRequest(str(error)) from error

    def _page(
        self, request: web.Request, items: list[Any], encode: Callable[[Any], dict[str, Any]]
    ) -> web.Response:
        offset = self._query_int(request, "offset", 0)
        limit = self._query_int(request, "limit", DEFAULT_LIMIT)
        if offset < 0 or limit < 0:
            raise _BadRequest(f"offset and limit must not be negative, got offset={offset} limit={limit}")
        limit = min(limit, self.max_limit)
        data = [encode(item) for item in items[offset : offset + limit]]
        meta = {"offset": offset, "limit": limit, "maxLimit": self.max_limit, "totalCount": len(items)}
        return web.json_response({"data": data, "meta": meta})

    @staticmethod
    def _child_count(request: web.Request) -> bool:
        return request.query.get("childCount", "").lower() == "true"

    def _lookup(self, table: Mapping[int, Any], request: web.Request, what: str) -> Any:
        object_id = int(request.match_info["id"])
        item = table.get(object_id)
        if item is None:
            raise _NotFound(f"{what} {object_id} not found")
        return item

    def _readable_image(self, request: web.Request) -> Image:
        image = self._lookup(self.catalogue.images, request, "Image")
        if image.forbidden:
            raise _Forbidden(f"Image {image.id} is not readable by the public user")
        return image

    def _container_json(self, request: web.Request, item: Container) -> dict[str, Any]:
        count = len(item.child_ids) if self._child_count(request) else None
        encoded = marshal.container(self._base(request), item, count if count is not None else 0)
        if count is None:
            encoded.pop("omero:childCount")
        return encoded

    # ---- session and API roots ---------------------------------------------------------------
    async def session(self, request: web.Request) -> web.Response:
        """`/webclient/?experimenter=-1`: logs in the public user and sets the session cookie."""
        response = web.Response(
            text="<!DOCTYPE html><html><head><title>OMERO webclient (idrcell emulator)</title></head>"
            "<body>Public data</body></html>",
            content_type="text/html",
        )
        if request.cookies.get(SESSION_COOKIE) not in self.sessions:
            token = hashlib.blake2b(
                f"{self.catalogue.seed}-{len(self.sessions)}".encode(), digest_size=16
            ).hexdigest()
            self.sessions.add(token)
            self.recorder.session()
            response.set_cookie(SESSION_COOKIE, token, path="/", httponly=True, samesite="Lax")
        return response

    async def api_root(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"version": "0", "url:base": f"{self._base(request)}/api/v0/"}]})

    async def api_versions(self, request: web.Request) -> web.Response:
        api = f"{self._base(request)}/api/v0"
        names = ("projects", "datasets", "images", "screens", "plates")
        return web.json_response(
            {f"url:{name}": f"{api}/m/{name}/" for name in names} | {"url:schema": marshal.OME}
        )

    # ---- JSON API ----------------------------------------------------------------------------
    async def screens(self, request: web.Request) -> web.Response:
        return self._page(request, list(self.catalogue.screens), lambda s: self._container_json(request, s))

    async def projects(self, request: web.Request) -> web.Response:
        return self._page(request, list(self.catalogue.projects), lambda p: self._container_json(request, p))

    async def screen(self, request: web.Request) -> web.Response:
        item = self._lookup(self.screen_by_id, request, "Screen")
        return web.json_response({"data": self._container_json(request, item)})

    async def project(self, request: web.Request) -> web.Response:
        item = self._lookup(self.project_by_id, request, "Project")
        return web.json_response({"data": self._container_json(request, item)})

    async def screen_plates(self, request: web.Request) -> web.Response:
        item = self._lookup(self.screen_by_id, request, "Screen")
        plates = [self.catalogue.plates[i] for i in item.child_ids]
        return self._page(request, plates, lambda p: marshal.plate(self._base(request), p))

    async def plate(self, request: web.Request) -> web.Response:
        item = self._lookup(self.catalogue.plates, request, "Plate")
        return web.json_response({"data": marshal.plate(self._base(request), item)})

    async def plate_wells(self, request: web.Request) -> web.Response:
        item = self._lookup(self.catalogue.plates, request, "Plate")
        wells = sorted(item.wells, key=lambda w: (w.column, w.row))  # the JSON API orders by Column, Row
        return self._page(request, wells, lambda w: marshal.well(self._base(request), self.catalogue, w))

    async def well(self, request: web.Request) -> web.Response:
        item = self._lookup(self.catalogue.wells, request, "Well")
        return web.json_response({"data": marshal.well(self._base(request), self.catalogue, item)})

    async def project_datasets(self, request: web.Request) -> web.Response:
        item = self._lookup(self.project_by_id, request, "Project")
        datasets = [self.catalogue.datasets[i] for i in item.child_ids]
        return self._page(request, datasets, lambda d: marshal.dataset(self._base(request), d))

    async def dataset(self, request: web.Request) -> web.Response:
        item = self._lookup(self.catalogue.datasets, request, "Dataset")
        return web.json_response({"data": marshal.dataset(self._base(request), item)})

    async def dataset_images(self, request: web.Request) -> web.Response:
        item = self._lookup(self.catalogue.datasets, request, "Dataset")
        images = [self.catalogue.images[i] for i in item.image_ids]
        return self._page(
            request, images, lambda i: marshal.image(self._base(request), i, with_channels=False)
        )

    async def image(self, request: web.Request) -> web.Response:
        item = self._readable_image(request)
        return web.json_response({"data": marshal.image(self._base(request), item, with_channels=True)})

    # ---- webclient and webgateway ------------------------------------------------------------
    async def annotations(self, request: web.Request) -> web.Response:
        """Map annotations of a screen or project; unknown ids and other types answer an empty list."""
        empty = {"annotations": [], "experimenters": []}
        if request.query.get("type", "map") != "map":
            return web.json_response(empty)
        for parameter, table in (("screen", self.screen_by_id), ("project", self.project_by_id)):
            if parameter in request.query:
                item = table.get(self._query_int(request, parameter, 0))
                return web.json_response(marshal.annotations(item) if item else empty)
        return web.json_response(empty)

    async def img_data(self, request: web.Request) -> web.Response:
        image = self._readable_image(request)
        if self.mode == "2026":
            return web.json_response({"id": image.id, "Exception": IMG_DATA_EXCEPTION})
        return web.json_response(marshal.img_data(self.catalogue, image))

    def _plane_indices(self, request: web.Request, image: Image) -> tuple[int, int]:
        z_text = request.match_info.get("z", "").rstrip("/")
        t_text = request.match_info.get("t", "").rstrip("/")
        z = int(z_text) if z_text else image.default_z
        t = int(t_text) if t_text else image.default_t
        if not (0 <= z < image.size_z and 0 <= t < image.size_t):
            raise _BadRequest(
                f"plane z={z} t={t} is outside image {image.id} (z < {image.size_z}, t < {image.size_t})"
            )
        return z, t

    async def render_image(self, request: web.Request) -> web.Response:
        if self.mode == "2026":
            return web.Response(status=403, body=b"")
        image = self._readable_image(request)
        z, t = self._plane_indices(request, image)
        self._check_renderable(image)
        limit = self.catalogue.plane_limit
        if max(image.width, image.height) > limit:
            # Choice documented in docs/emulator.md: like an OMERO.server whose plane exceeds
            # omero.pixeldata.max_plane_width/height, refuse the whole plane; tiles still work.
            raise _BadRequest(
                f"Image {image.id} is {image.width} x {image.height} px, above the plane limit of "
                f"{limit} px: use /webgateway/render_image_region/ with region=x,y,w,h"
            )
        return await self._render(request, image, z, t, (0, 0, image.width, image.height))

    async def render_image_region(self, request: web.Request) -> web.Response:
        if self.mode == "2026":
            return web.Response(status=403, body=b"")
        image = self._readable_image(request)
        z, t = self._plane_indices(request, image)
        self._check_renderable(image)
        region = parse_region(request.query.get("region"), image)
        limit = self.catalogue.plane_limit
        if max(region[2], region[3]) > limit:
            raise _BadRequest(f"region {region[2]} x {region[3]} px is above the plane limit of {limit} px")
        return await self._render(request, image, z, t, region)

    async def render_thumbnail(self, request: web.Request) -> web.Response:
        """A JPEG of the default plane with the default settings, longest side 96 px (both modes)."""
        image = self._readable_image(request)
        self._check_renderable(image)
        scale = THUMBNAIL_SIZE / max(image.width, image.height)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        settings = default_settings(image)
        mode = "g" if image.size_c == 1 else "c"

        def work() -> bytes:
            def plane(index: int) -> Any:
                return self.planes.plane(image, index, image.default_z, image.default_t)

            rgb = render_rgb(plane, settings, mode, (image.height, image.width))
            small = PILImage.fromarray(rgb).resize(size, PILImage.Resampling.BILINEAR)
            return encode_jpeg(np.asarray(small), 90)

        body = await asyncio.get_running_loop().run_in_executor(self.pool, work)
        return web.Response(body=body, content_type="image/jpeg")

    # ---- the object store: OME-Zarr copies -----------------------------------------------------
    async def zarr_file(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        body = await asyncio.get_running_loop().run_in_executor(self.pool, self.zarr.get, path)
        if body is None:  # S3 answers a missing key with 404 and an XML error body
            return web.Response(
                status=404, text=_S3_ERROR.format(code="NoSuchKey"), content_type="application/xml"
            )
        content_type = (
            "application/json" if path.endswith((".json", ".zattrs", ".zgroup", ".zarray")) else None
        )
        return web.Response(body=body, content_type=content_type or "application/octet-stream")

    async def bucket(self, request: web.Request) -> web.Response:
        """`/idr/?list-type=2&prefix=zarr/...&delimiter=/`: S3 ListObjectsV2 (if listing is allowed)."""
        if not self.zarr_listing or request.query.get("list-type") != "2":
            return web.Response(
                status=403, text=_S3_ERROR.format(code="AccessDenied"), content_type="application/xml"
            )
        prefix = request.query.get("prefix", "")
        if not prefix.startswith("zarr/"):
            return web.Response(text=list_bucket_xml(BUCKET, prefix, [], []), content_type="application/xml")
        keys, folders = self.zarr.list(prefix[len("zarr/") :])
        xml = list_bucket_xml(BUCKET, prefix, ["zarr/" + k for k in keys], ["zarr/" + f for f in folders])
        return web.Response(text=xml, content_type="application/xml")

    @staticmethod
    def _check_renderable(image: Image) -> None:
        if image.width == 0 or image.height == 0:
            raise _BadRequest(f"Image {image.id} has no pixels ({image.width} x {image.height})")

    async def _render(
        self, request: web.Request, image: Image, z: int, t: int, region: tuple[int, int, int, int]
    ) -> web.Response:
        settings = parse_channels(request.query.get("c"), image)
        mode = parse_mode(request.query.get("m"), default="g" if image.size_c == 1 else "c")
        quality = parse_quality(request.query.get("q"))
        x, y, w, h = region

        def work() -> bytes:
            def plane(index: int) -> Any:
                return self.planes.plane(image, index, z, t)[y : y + h, x : x + w]

            return encode_jpeg(render_rgb(plane, settings, mode, (h, w)), quality)

        body = await asyncio.get_running_loop().run_in_executor(self.pool, work)
        return web.Response(body=body, content_type="image/jpeg")


_S3_ERROR = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code></Error>'


class _BadRequest(web.HTTPBadRequest):
    def __init__(self, message: str) -> None:
        super().__init__(reason="Bad Request", text=message)
        self.message = message


class _NotFound(web.HTTPNotFound):
    def __init__(self, message: str) -> None:
        super().__init__(text=message)
        self.message = message


class _Forbidden(web.HTTPForbidden):
    def __init__(self, message: str) -> None:
        super().__init__(text=message)
        self.message = message


@web.middleware
async def _messages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn the emulator's own HTTP errors into `{"message": ...}` JSON (inside `observe`)."""
    try:
        return await handler(request)
    except (_BadRequest, _NotFound, _Forbidden) as error:
        return _json_error(error.status, error.message)
    except RenderRequestError as error:
        return _json_error(400, str(error))


async def _stamp_api_version(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-OMERO-ApiVersion"] = API_VERSION


def create_app(
    catalogue: Catalogue,
    faults: FaultConfig = FaultConfig(),
    max_limit: int = DEFAULT_MAX_LIMIT,
    require_session: bool = True,
    recorder: _Recorder | None = None,
    plane_cache_bytes: int = 256 * 2**20,
    render_threads: int = 4,
    mode: str = "classic",
    zarr_listing: bool = True,
) -> tuple[web.Application, _Emulator]:
    """The aiohttp application serving `catalogue`, and its state object (for faults and stats)."""
    if max_limit < 1:
        raise ValueError(f"max_limit must be at least 1, got {max_limit}")
    emulator = _Emulator(
        catalogue,
        faults,
        max_limit,
        require_session,
        recorder or _Recorder(),
        plane_cache_bytes,
        render_threads,
        mode,
        zarr_listing,
    )
    app = web.Application(
        middlewares=[
            emulator.observe,
            web.normalize_path_middleware(append_slash=True, merge_slashes=False),
            emulator.inject,
            emulator.session_check,
            _messages,
        ]
    )
    app.on_response_prepare.append(_stamp_api_version)
    identifier = r"{id:\d+}"
    routes = [
        ("/webclient/", emulator.session, "session"),
        ("/api/", emulator.api_root, "api_root"),
        ("/api/v0/", emulator.api_versions, "api_versions"),
        ("/api/v0/m/screens/", emulator.screens, "screens"),
        (f"/api/v0/m/screens/{identifier}/", emulator.screen, "screen"),
        (f"/api/v0/m/screens/{identifier}/plates/", emulator.screen_plates, "screen_plates"),
        (f"/api/v0/m/plates/{identifier}/", emulator.plate, "plate"),
        (f"/api/v0/m/plates/{identifier}/wells/", emulator.plate_wells, "plate_wells"),
        (f"/api/v0/m/wells/{identifier}/", emulator.well, "well"),
        ("/api/v0/m/projects/", emulator.projects, "projects"),
        (f"/api/v0/m/projects/{identifier}/", emulator.project, "project"),
        (f"/api/v0/m/projects/{identifier}/datasets/", emulator.project_datasets, "project_datasets"),
        (f"/api/v0/m/datasets/{identifier}/", emulator.dataset, "dataset"),
        (f"/api/v0/m/datasets/{identifier}/images/", emulator.dataset_images, "dataset_images"),
        (f"/api/v0/m/images/{identifier}/", emulator.image, "image"),
        ("/webclient/api/annotations/", emulator.annotations, "annotations"),
        (f"/webgateway/imgData/{identifier}/", emulator.img_data, "imgData"),
        (f"/webgateway/render_thumbnail/{identifier}/", emulator.render_thumbnail, "render_thumbnail"),
        (f"/{BUCKET}/", emulator.bucket, "bucket"),
    ]
    for path, handler, name in routes:
        app.router.add_get(path, handler, name=name, allow_head=False)
    for route, handler in (
        ("render_image", emulator.render_image),
        ("render_image_region", emulator.render_image_region),
    ):
        # OMERO.web accepts /{id}/, /{id}/{z}/ and /{id}/{z}/{t}/ (missing planes default to rdefs).
        resource = app.router.add_resource(
            rf"/webgateway/{route}/{identifier}/{{z:(?:\d+/)?}}{{t:(?:\d+/)?}}", name=route
        )
        resource.add_route("GET", handler)
    # Store keys end without a slash: this route must not be redirected by normalize_path_middleware.
    app.router.add_get(rf"/{BUCKET}/zarr/{{path:.+[^/]}}", emulator.zarr_file, name="zarr", allow_head=False)
    app.on_cleanup.append(lambda _app: _shutdown_pool(emulator))
    return app, emulator


async def _shutdown_pool(emulator: _Emulator) -> None:
    emulator.pool.shutdown(wait=False, cancel_futures=True)


class EmulatorServer:
    """Serve a catalogue on `host:port` from a background thread; a context manager.

    >>> with EmulatorServer("tiny") as server:  # doctest: +SKIP
    ...     server.base_url  # e.g. http://127.0.0.1:43121
    """

    def __init__(
        self,
        catalogue: str | os.PathLike[str] | Catalogue = "tiny",
        faults: FaultConfig = FaultConfig(),
        host: str = "127.0.0.1",
        port: int = 0,
        max_limit: int = DEFAULT_MAX_LIMIT,
        *,
        seed: int = 0,
        require_session: bool = True,
        plane_cache_mb: int = 256,
        render_threads: int = 4,
        mode: str = "classic",
        zarr_listing: bool = True,
    ) -> None:
        self.catalogue = (
            catalogue if isinstance(catalogue, Catalogue) else load_catalogue(catalogue, seed=seed)
        )
        self.host = host
        self._requested_port = port
        self._recorder = _Recorder()
        self._app, self._emulator = create_app(
            self.catalogue,
            faults,
            max_limit,
            require_session,
            self._recorder,
            plane_cache_mb * 2**20,
            render_threads,
            mode,
            zarr_listing,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the emulator is not running; call start() or use it as a context manager")
        return self._port

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def zarr_base_url(self) -> str:
        """Where the OME-Zarr stores are served, the value of the builder's `--zarr-base-url`."""
        return f"{self.base_url}/{BUCKET}/zarr"

    @property
    def stats(self) -> EmulatorStats:
        return self._recorder.snapshot()

    @property
    def faults(self) -> FaultConfig:
        return self._emulator.faults

    def set_faults(self, faults: FaultConfig) -> None:
        """Switch faults at run time; takes effect from the next request."""
        self._emulator.faults = faults

    def reset_stats(self) -> None:
        self._recorder.reset()

    def start(self) -> EmulatorServer:
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        self._thread = threading.Thread(target=self._serve, name="idrcell-emulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise OSError(f"cannot serve on {self.host}:{self._requested_port}: {self._startup_error}")
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = None
        self._port = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self._requested_port)
            loop.run_until_complete(site.start())
            self._port = int(runner.addresses[0][1])
        except BaseException as error:  # report to the starting thread instead of dying silently
            self._startup_error = error
            loop.run_until_complete(runner.cleanup())
            loop.close()
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()
