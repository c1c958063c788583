"""Find the OME-Zarr copy of an IDR image: naming rules, the list's `zarr` column, and listing.

The IDR's object store names a copy after its study folder and the plate or image id (or, in some
v0.5 stores, the plate name); the rules are data (`data/zarr_layouts.csv`), tried in order after the
experiment's own `zarr` template. A store is taken to exist when its root group metadata answers
(`.zattrs` for zarr v2 / OME-NGFF 0.4, `zarr.json` for zarr v3 / 0.5). When no rule matches, the
study folders are listed (S3 ListObjectsV2 with a `/` delimiter) where the store allows it, and an
entry named after the plate (name or id) or the image id is taken.

Results are cached per store URL and per folder, and resolution is a pure function of what the
server holds, so concurrent image fetches find the same stores in any order.
"""

from __future__ import annotations

import asyncio
import csv
import io
import xml.etree.ElementTree as ElementTree
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import quote

from yarl import URL

from idrcell.client import IDRClient, PermanentHTTPError
from idrcell.experiments import Experiment
from idrcell.sampling import Candidate

# The IDR's object store after its 2026 move (IDR notice of 2026-09-22; docs/idr-api.md).
DEFAULT_ZARR_BASE_URL = "https://livingobjects.ebi.ac.uk/idr/zarr"
ZARR_BASE_URL_ENV = "IDR_ZARR_BASE_URL"
_STORE_SUFFIXES = (".ome.zarr", ".zarr")
T = TypeVar("T")


class ZarrSourceError(ValueError):
    """No OME-Zarr copy found for an experiment; the message names every location tried."""


def layout_templates(kind: str) -> list[str]:
    """The packaged naming rules for `screen` or `project` containers, in the order tried."""
    text = resources.files("idrcell").joinpath("data").joinpath("zarr_layouts.csv").read_text("utf-8")
    rows = csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#"))
    return [row["template"] for row in rows if row["kind"] == kind]


def study_id(study: str) -> str:
    """`idr0001` of `idr0001-graml-sysgro`."""
    return study.split("-", 1)[0]


def container_letter(container: str) -> str:
    """`A` of `screenA` or `experimentA` (the IDR names containers screenA, screenB, ...)."""
    tail = container.removeprefix("screen").removeprefix("experiment")
    return tail.upper() or "A"


def fill_template(template: str, experiment: Experiment, candidate: Candidate) -> str:
    values = {
        "study_id": study_id(experiment.study),
        "letter": container_letter(experiment.container),
        "image_id": str(candidate.image_id),
        "plate_id": str(candidate.group_id),
        "plate_name": candidate.group_name or str(candidate.group_id),
    }
    return template.format(**values)


@dataclass(frozen=True)
class StoreLocation:
    """An OME-Zarr store (`url`) and where the image is inside it (`path`, "" for the root)."""

    url: str
    zarr_format: int  # 2 or 3
    path: str = ""


class ZarrResolver:
    """Resolves candidates to store locations for one experiment, over the stage's client."""

    def __init__(self, client: IDRClient, experiment: Experiment, base_url: str) -> None:
        self.client = client
        self.experiment = experiment
        self.base_url = base_url.rstrip("/")
        self.tried: list[str] = []  # every store URL and listing tried, for the failure message
        self._cache: dict[str, asyncio.Future[Any]] = {}

    async def once(self, key: str, make: Callable[[], Awaitable[T]]) -> T:
        """Run `make` once per key; concurrent callers share the result (or the exception)."""
        future = self._cache.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._cache[key] = future
            try:
                future.set_result(await make())
            except BaseException as error:
                future.set_exception(error)
                future.exception()  # mark retrieved: a caller may never await it
                del self._cache[key]  # a transient failure must not stick
                raise
        return await asyncio.shield(future)

    def _url(self, relative: str) -> str:
        if relative.startswith(("http://", "https://")):
            return relative.rstrip("/")
        return f"{self.base_url}/{quote(relative.strip('/'), safe='/')}"

    async def zarr_format(self, url: str) -> int | None:
        """2 or 3 when `url` is an OME-Zarr group, None when nothing answers there."""

        async def probe() -> int | None:
            if len(self.tried) < 50:  # the failure message shows a few; keep memory flat
                self.tried.append(url)
            order = (".zattrs", "zarr.json") if "/v0.4/" in url else ("zarr.json", ".zattrs")
            for name in order:
                try:
                    if await self.client.get_bytes(f"{url}/{name}") is not None:
                        return 2 if name == ".zattrs" else 3
                except PermanentHTTPError:  # 403 for a key an object store hides: not there
                    continue
            return None

        return await self.once("probe " + url, probe)

    async def store_of(self, candidate: Candidate, tried: list[str] | None = None) -> StoreLocation | None:
        """The store holding this candidate (a plate's store for screen images), or None; `tried`
        collects the store URLs and listings looked at for it (cached answers included)."""
        tried = [] if tried is None else tried
        is_screen = self.experiment.kind == "screen"
        templates = [self.experiment.zarr] if self.experiment.zarr else []
        templates += layout_templates("screen" if is_screen else "project")
        for template in templates:
            url = self._url(fill_template(template, self.experiment, candidate))
            tried.append(url)
            found = await self.zarr_format(url)
            if found is not None:
                return StoreLocation(url, found)
        return await self._discover(candidate, tried)

    async def _discover(self, candidate: Candidate, tried: list[str]) -> StoreLocation | None:
        """Look for the store in the study's folders by listing them, where the store allows it."""
        wanted = (
            {str(candidate.group_id), candidate.group_name or ""}
            if self.experiment.kind == "screen"
            else {str(candidate.image_id)}
        )
        sid, letter = study_id(self.experiment.study), container_letter(self.experiment.container)
        for folder in (f"v0.4/{sid}{letter}/", f"v0.5/{sid}/", f"v0.5/{sid}{letter}/"):
            tried.append(f"listing {self.base_url}/{folder}")
            for entry in await self._listing(folder):
                name = entry.rstrip("/").rsplit("/", 1)[-1]
                stem = next((name[: -len(s)] for s in _STORE_SUFFIXES if name.endswith(s)), None)
                if stem is not None and stem in wanted:
                    url = self._url(folder + name)
                    tried.append(url)
                    found = await self.zarr_format(url)
                    if found is not None:
                        return StoreLocation(url, found)
        return None

    async def _listing(self, folder: str) -> list[str]:
        """Common prefixes under `folder` (relative to the base URL); [] where listing is refused."""
        base = URL(self.base_url + "/")
        bucket, _, key_prefix = base.path.strip("/").partition("/")
        if not bucket:
            return []
        prefix = f"{key_prefix}/{folder}" if key_prefix else folder
        url = str(
            base.with_path(f"/{bucket}/").with_query({"list-type": "2", "prefix": prefix, "delimiter": "/"})
        )

        async def fetch() -> list[str]:
            if len(self.tried) < 50:
                self.tried.append(f"listing {url}")
            try:
                body = await self.client.get_bytes(url)
            except PermanentHTTPError:
                return []
            return common_prefixes(body or b"", key_prefix)

        return await self.once("list " + url, fetch)

    def describe_tried(self, limit: int = 8) -> str:
        shown = self.tried[:limit]
        more = f" and {len(self.tried) - limit} more" if len(self.tried) > limit else ""
        return ", ".join(shown) + more if shown else "nothing"


def common_prefixes(body: bytes, key_prefix: str) -> list[str]:
    """The CommonPrefixes of an S3 listing, relative to the zarr base; [] for anything else."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return []
    names = [el.text or "" for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Prefix"]
    lead = f"{key_prefix}/" if key_prefix else ""
    return [
        name[len(lead) :] for name in names if name.startswith(lead) and name.endswith("/") and name != lead
    ]
