"""An asyncio client for the few public IDR routes the builder needs (see docs/builder.md).

One `IDRClient` holds one aiohttp session (the cookie jar keeps IDR's anonymous session cookie set
by the warm-up call), one semaphore (the global concurrency cap) and the retry policy:
- 5xx, timeouts, connection errors, cut bodies: retry with exponential backoff and jitter;
- HTTP 200 `{"ConcurrencyException": {"backOff": ms}}`: wait `backOff`, retry;
- 429: wait `Retry-After`, retry;
- 400/403/404: `PermanentHTTPError`, never retried (the caller skips the image and records why);
- a body longer than `max_response_bytes`: `ResponseTooLarge`, never retried (read in chunks and
  abandoned at the cap, so a hostile or broken answer costs at most the cap in memory).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from yarl import URL

from idrcell import __version__
from idrcell.render import is_complete_jpeg

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://idr.openmicroscopy.org"
BASE_URL_ENV = "IDR_BASE_URL"
USER_AGENT = f"idrcell/{__version__} (IDRCell dataset builder for ChAda-ViT; aiohttp)"


@dataclass(frozen=True)
class ClientConfig:
    base_url: str = DEFAULT_BASE_URL
    # IDR's web tier has 25 workers (docs/idr-api.md): 8 concurrent requests is a polite share.
    concurrency: int = 8
    # IDR's proxy gives up after 60 s, so a longer client timeout would only wait for a 504.
    timeout_s: float = 60.0
    max_retries: int = 8
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    page_size: int = 1000  # asked for; the server may cap it (meta.limit says what it gave)
    seed: int = 0  # seeds the backoff jitter
    user_agent: str = USER_AGENT
    # The largest body read from one answer. IDR's largest are JSON listings of 1,000 wells (a few
    # MB) and render JPEGs of planes up to 3,000 x 3,000 px (~9 MB at q=1.0, the worst case).
    max_response_bytes: int = 64 * 2**20


class IDRError(Exception):
    """Base class of the client's errors."""


class PermanentHTTPError(IDRError):
    """A 4xx answer that retrying cannot fix (403 for a private image, 404, 400)."""

    def __init__(self, status: int, url: str, message: str) -> None:
        self.status = status
        self.url = url
        self.message = message
        super().__init__(f"HTTP {status} for {url}: {message}")


class TransientFailure(IDRError):
    """A request that kept failing transiently until the retries ran out."""

    def __init__(self, url: str, attempts: int, last_error: str) -> None:
        self.url = url
        self.attempts = attempts
        self.last_error = last_error
        super().__init__(f"{url} failed {attempts} times; last error: {last_error}")


class ProtocolError(IDRError):
    """An answer whose shape breaks the API contract (e.g. a listing without `meta`)."""


class ResponseTooLarge(ProtocolError):
    """An answer longer than `ClientConfig.max_response_bytes`; retrying would read it again."""

    def __init__(self, url: str, size: int, limit: int, declared: bool) -> None:
        self.url = url
        how = f"declares {size} bytes" if declared else f"goes on past {size} bytes"
        super().__init__(
            f"the answer of {url} {how}, above the cap of {limit} bytes (ClientConfig.max_response_bytes)"
        )


@dataclass
class ClientStats:
    requests: int = 0
    bytes: int = 0
    retries: Counter[str] = field(default_factory=Counter)  # reason -> count
    wait_s: float = 0.0  # time spent sleeping in backoffs

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "bytes": self.bytes,
            "retries": dict(sorted(self.retries.items())),
            "wait_s": round(self.wait_s, 3),
        }


class _Retry(Exception):
    def __init__(self, reason: str, delay_s: float | None = None) -> None:
        self.reason = reason
        self.delay_s = delay_s
        super().__init__(reason)


def _error_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip() or "no message"
    if isinstance(data, dict) and "message" in data:
        return str(data["message"])
    return str(data)[:200]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class IDRClient:
    """Use as `async with IDRClient(config) as client:`; the warm-up call runs on entry."""

    def __init__(self, config: ClientConfig = ClientConfig()) -> None:
        if config.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {config.concurrency}")
        if config.max_response_bytes < 1:
            raise ValueError(f"max_response_bytes must be at least 1, got {config.max_response_bytes}")
        self.config = config
        self.stats = ClientStats()
        self._base = URL(config.base_url.rstrip("/") + "/")
        self._semaphore = asyncio.Semaphore(config.concurrency)
        self._rng = random.Random(config.seed)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> IDRClient:
        # unsafe=True: keep cookies from IP-address hosts too (an emulator on 127.0.0.1).
        self._session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            connector=aiohttp.TCPConnector(limit=self.config.concurrency),
            headers={"User-Agent": self.config.user_agent},
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
        )
        try:
            await self.warm_up()
        except BaseException:
            await self._session.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, path: str, params: list[tuple[str, str]] | None = None) -> URL:
        url = self._base.join(URL(path.lstrip("/")))
        return url.with_query(params) if params else url

    async def warm_up(self) -> None:
        """Open the anonymous public-user session; IDR sets its session cookie here."""
        await self._request("webclient/", [("experimenter", "-1")], expect="any")

    async def get_json(self, path: str, params: list[tuple[str, str]] | None = None) -> Any:
        return await self._request(path, params, expect="json")

    async def get_jpeg(self, path: str, params: list[tuple[str, str]] | None = None) -> bytes:
        return await self._request(path, params, expect="jpeg")

    async def get_bytes(self, url: str) -> bytes | None:
        """The raw body at an absolute URL (an OME-Zarr file on object storage), None for a 404.

        Same retries, backoff and concurrency cap as the API routes (the semaphore is shared)."""
        try:
            return await self._request(url, None, expect="any")
        except PermanentHTTPError as error:
            if error.status == 404:
                return None
            raise

    async def list_all(self, path: str, params: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
        """Every item of a paged `/api/v0/` listing, paging by the `limit` the server says it used."""
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            page_params = [*(params or []), ("offset", str(offset)), ("limit", str(self.config.page_size))]
            page = await self.get_json(path, page_params)
            try:
                data, meta = page["data"], page["meta"]
                total, limit = int(meta["totalCount"]), int(meta["limit"])
            except (KeyError, TypeError, ValueError, OverflowError) as error:  # e.g. totalCount 1e400
                raise ProtocolError(f"{path}: a listing without data/meta.totalCount/meta.limit") from error
            if not isinstance(data, list) or limit < 1:
                raise ProtocolError(f"{path}: listing data is not a list or meta.limit < 1")
            items.extend(item for item in data if isinstance(item, dict))
            offset += limit
            if offset >= total:
                return items
            if not data:
                logger.warning(
                    "%s: empty page at offset %d before totalCount %d", path, offset - limit, total
                )
                return items

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with 'equal jitter': half the step fixed, half random."""
        step = min(self.config.backoff_max_s, self.config.backoff_base_s * 2**attempt)
        return step / 2 + self._rng.uniform(0, step / 2)

    async def _request(
        self, path: str, params: list[tuple[str, str]] | None, expect: Literal["json", "jpeg", "any"]
    ) -> Any:
        assert self._session is not None, "use IDRClient inside `async with`"
        url = self.url(path, params)
        last_error = "no attempt"
        for attempt in range(self.config.max_retries + 1):
            try:
                return await self._attempt(url, expect)
            except _Retry as retry:
                last_error = retry.reason
                self.stats.retries[retry.reason.split(":")[0]] += 1
                if attempt == self.config.max_retries:
                    break
                delay = retry.delay_s if retry.delay_s is not None else self._backoff(attempt)
                delay = min(delay, self.config.backoff_max_s)
                logger.debug("retrying %s in %.2f s after %s", url, delay, retry.reason)
                self.stats.wait_s += delay
                await asyncio.sleep(delay)
        raise TransientFailure(str(url), self.config.max_retries + 1, last_error)

    async def _attempt(self, url: URL, expect: Literal["json", "jpeg", "any"]) -> Any:
        assert self._session is not None
        # The semaphore is held only while a request is on the wire, never during a backoff sleep.
        async with self._semaphore:
            self.stats.requests += 1
            try:
                async with self._session.get(url, allow_redirects=True) as response:
                    status, headers = response.status, response.headers
                    body = await self._read_capped(response, str(url))
            except TimeoutError:
                raise _Retry("timeout") from None
            except aiohttp.ClientPayloadError as error:
                raise _Retry(f"truncated: {error}") from None
            except aiohttp.ClientError as error:
                raise _Retry(f"connection: {type(error).__name__}") from None
        self.stats.bytes += len(body)
        if status == 429:
            raise _Retry("429", parse_retry_after(headers.get("Retry-After")))
        if status >= 500:
            raise _Retry(f"{status}")
        if status >= 400:
            raise PermanentHTTPError(status, str(url), _error_message(body))
        if expect == "any":
            return body
        if body[:1] == b"{" and b"ConcurrencyException" in body[:200]:
            raise _Retry("concurrency", self._concurrency_backoff(body))
        if expect == "jpeg":
            if not is_complete_jpeg(body):
                if body[:2] != b"\xff\xd8":  # not even the start of a JPEG: e.g. a proxy's page with 200
                    kind = headers.get("Content-Type", "no content type")
                    raise _Retry(f"not_jpeg: a {len(body)}-byte body of {kind} instead of a JPEG")
                raise _Retry("truncated: incomplete JPEG")
            return body
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as error:  # RecursionError: nesting deeper than Python's stack
            raise _Retry(f"invalid_json: {str(error)[:120]}") from None

    async def _read_capped(self, response: aiohttp.ClientResponse, url: str) -> bytes:
        """The body, read in chunks and abandoned (connection closed) once past the cap."""
        limit = self.config.max_response_bytes
        declared = response.content_length
        if declared is not None and declared > limit:
            raise ResponseTooLarge(url, declared, limit, declared=True)
        chunks, size = [], 0
        async for chunk in response.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                self.stats.bytes += size
                raise ResponseTooLarge(url, limit, limit, declared=False)
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _concurrency_backoff(body: bytes) -> float | None:
        try:
            delay = float(json.loads(body)["ConcurrencyException"]["backOff"]) / 1000.0
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
            return None
        return delay if math.isfinite(delay) and delay >= 0 else None  # NaN would break the sleep
