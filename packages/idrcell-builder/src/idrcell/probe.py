"""`idrcell probe`: which routes a server answers, so a user sees what a build will be able to do.

One image is looked at (the one given, or the first of the first screen or project), through every
route a build may use: the JSON API, imgData, render_image, render_thumbnail, and the OME-Zarr
object store (a bucket listing under `--zarr-base-url`). Few requests, one retry each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yarl import URL

from idrcell.client import ClientConfig, IDRClient, IDRError, PermanentHTTPError
from idrcell.render import is_complete_jpeg
from idrcell.zarr_resolve import common_prefixes
from idrcell.zarr_source import img_data_has_exception, pixels_from_api


@dataclass(frozen=True)
class RouteCheck:
    route: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class ProbeReport:
    checks: list[RouteCheck]
    image_id: int | None

    @property
    def pixel_source(self) -> str:
        """What `--pixel-source auto` would use for this image."""
        by_route = {c.route: c for c in self.checks}
        render = by_route.get("render_image")
        return "render" if render is not None and render.ok else "zarr"


async def _first_image(client: IDRClient) -> int | None:
    """The first image of the first screen (plate, well, field), else of the first project."""

    async def first(path: str) -> dict[str, Any] | None:
        data = (await client.get_json(path, [("limit", "1")])).get("data")
        return data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else None

    screen = await first("api/v0/m/screens/")
    if screen is not None:
        plate = await first(f"api/v0/m/screens/{screen['@id']}/plates/")
        well = await first(f"api/v0/m/plates/{plate['@id']}/wells/") if plate else None
        for sample in (well or {}).get("WellSamples", []):
            image = sample.get("Image") if isinstance(sample, dict) else None
            if isinstance(image, dict) and isinstance(image.get("@id"), int):
                return image["@id"]
    project = await first("api/v0/m/projects/")
    if project is not None:
        dataset = await first(f"api/v0/m/projects/{project['@id']}/datasets/")
        image = await first(f"api/v0/m/datasets/{dataset['@id']}/images/") if dataset else None
        if image is not None and isinstance(image.get("@id"), int):
            return image["@id"]
    return None


async def _check(route: str, call: Any) -> RouteCheck:
    try:
        return RouteCheck(route, *(await call()))
    except PermanentHTTPError as error:
        body = "empty body" if error.message in ("", "no message") else error.message[:80]
        return RouteCheck(route, False, f"HTTP {error.status} ({body})")
    except IDRError as error:
        return RouteCheck(route, False, str(error)[:160])


async def probe(base_url: str, zarr_base_url: str, image_id: int | None = None) -> ProbeReport:
    config = ClientConfig(base_url=base_url, max_retries=1, timeout_s=20.0, concurrency=2)
    checks: list[RouteCheck] = []
    async with IDRClient(config) as client:

        async def api() -> tuple[bool, str]:
            answer = await client.get_json("api/v0/")
            return isinstance(answer, dict), "JSON" if isinstance(answer, dict) else "not a JSON object"

        checks.append(await _check("api", api))
        if image_id is None and checks[0].ok:
            try:
                image_id = await _first_image(client)
            except (IDRError, KeyError, TypeError, AttributeError):
                image_id = None
        if image_id is not None:

            async def image() -> tuple[bool, str]:
                info = pixels_from_api(await client.get_json(f"api/v0/m/images/{image_id}/"))
                if info is None:
                    return False, "no Pixels sizes"
                return (
                    True,
                    f"Pixels {info.width} x {info.height}, z {info.size_z}, t {info.size_t}, "
                    f"c {len(info.labels)}",
                )

            async def img_data() -> tuple[bool, str]:
                answer = await client.get_json(f"webgateway/imgData/{image_id}/")
                if img_data_has_exception(answer):
                    return False, f"200 with an Exception and no size: {str(answer['Exception'])[:60]}"
                return "size" in answer, "sizes and channel windows" if "size" in answer else "no size"

            async def render() -> tuple[bool, str]:
                body = await client.get_jpeg(f"webgateway/render_image/{image_id}/", [("c", "1"), ("m", "g")])
                return True, f"a {len(body)}-byte JPEG"

            async def thumbnail() -> tuple[bool, str]:
                body = await client.get_bytes(str(client.url(f"webgateway/render_thumbnail/{image_id}/")))
                ok = body is not None and is_complete_jpeg(body)
                return ok, f"a {len(body or b'')}-byte JPEG" if ok else "not a JPEG"

            checks.append(await _check(f"image {image_id}", image))
            checks.append(await _check("imgData", img_data))
            checks.append(await _check("render_image", render))
            checks.append(await _check("render_thumbnail", thumbnail))

        async def zarr_store() -> tuple[bool, str]:
            base = URL(zarr_base_url.rstrip("/") + "/")
            bucket, _, key_prefix = base.path.strip("/").partition("/")
            query = {"list-type": "2", "prefix": f"{key_prefix}/" if key_prefix else "", "delimiter": "/"}
            body = await client.get_bytes(str(base.with_path(f"/{bucket}/").with_query(query)))
            folders = common_prefixes(body or b"", key_prefix)
            if not folders:
                return False, "the bucket listing names no OME-Zarr folder"
            return True, "listing answers: " + ", ".join(folders[:6])

        checks.append(await _check("zarr store", zarr_store))
    return ProbeReport(checks, image_id)
