"""Switchable faults: every kind reaches an aiohttp client as IDR's would, deterministically, transiently."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from idrcell.emulator import ALL_FAULT_KINDS, EmulatorServer, FaultConfig
from idrcell.emulator.faults import draw_fault


async def _outcome(session: aiohttp.ClientSession, url: str, timeout: float) -> tuple[object, str, bytes]:
    """(status or exception name, content type, body) of one GET."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            body = await response.read()
            return response.status, response.headers.get("Content-Type", ""), body
    except (aiohttp.ClientPayloadError, TimeoutError) as error:
        return type(error).__name__, "", b""


def outcomes(
    server: EmulatorServer, paths: list[str], timeout: float = 5.0, faults: FaultConfig | None = None
) -> list[tuple[object, str, bytes]]:
    """GET `paths` in one session; `faults` are on between the session warm-up and the end."""

    async def run() -> list[tuple[object, str, bytes]]:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            async with session.get(f"{server.base_url}/webclient/") as response:
                assert response.status == 200
            if faults is not None:
                server.set_faults(faults)
                server.reset_stats()
            try:
                return [await _outcome(session, f"{server.base_url}{path}", timeout) for path in paths]
            finally:
                if faults is not None:
                    server.set_faults(FaultConfig())

    return asyncio.run(run())


@pytest.fixture(scope="module")
def server():
    with EmulatorServer("tiny") as running:
        yield running


@pytest.fixture(scope="module")
def image_id(server):
    return next(
        i.id for i in server.catalogue.images.values() if not i.forbidden and i.width and i.size_c >= 2
    )


def test_each_fault_kind_looks_like_idr_under_load(server, image_id):
    render = f"/webgateway/render_image/{image_id}/0/0/?c=1&m=g&q=1.0"
    expectations = {
        "500": lambda s, t, b: s == 500 and "stacktrace" in json.loads(b) and "message" in json.loads(b),
        "502": lambda s, t, b: s == 502 and t.startswith("text/html") and b"nginx" in b,
        "504": lambda s, t, b: s == 504 and b"Gateway Time-out" in b,
        "concurrency": lambda s, t, b: (
            s == 200 and json.loads(b) == {"ConcurrencyException": {"backOff": 75}}
        ),
        "truncated": lambda s, t, b: s == "ClientPayloadError",
        "timeout": lambda s, t, b: s == "TimeoutError",
    }
    try:
        for kind, check in expectations.items():
            only = FaultConfig(rate=1.0, kinds=(kind,), backoff_ms=75, timeout_sleep_s=0.6)
            ((status, content_type, body),) = outcomes(server, [render], timeout=0.3, faults=only)
            assert check(status, content_type, body), (kind, status, body[:200])
            assert server.stats.faults == {kind: 1}

        async def read_retry_after() -> tuple[int, str]:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
                async with session.get(f"{server.base_url}/webclient/") as response:
                    assert response.status == 200
                server.set_faults(FaultConfig(rate=1.0, kinds=("429",), retry_after_s=3))
                async with session.get(f"{server.base_url}{render}") as response:
                    return response.status, response.headers["Retry-After"]

        assert asyncio.run(read_retry_after()) == (429, "3")
    finally:
        server.set_faults(FaultConfig())
    # With faults switched off the same URL answers a real JPEG again.
    ((status, content_type, body),) = outcomes(server, [render])
    assert status == 200 and content_type == "image/jpeg" and body[:2] == b"\xff\xd8"


def test_route_limited_kinds_spare_the_json_api(server, image_id):
    engine_only = FaultConfig(rate=1.0, kinds=("truncated", "concurrency"))
    try:
        screens, img_data = outcomes(
            server, ["/api/v0/m/screens/", f"/webgateway/imgData/{image_id}/"], faults=engine_only
        )
    finally:
        server.set_faults(FaultConfig())
    assert screens[0] == 200 and "data" in json.loads(screens[2])
    assert "ConcurrencyException" in json.loads(img_data[2])  # imgData only gets the engine's fault


def test_faults_are_deterministic_transient_and_leave_pixels_untouched(image_id):
    urls = [f"/webgateway/render_image/{image_id}/0/0/?c={c}&m=g&q=1.0" for c in (1, 2)] * 6
    kinds = ("500", "502", "concurrency", "429")

    def run(seed: int) -> tuple[list[object], list[bytes], dict[str, int]]:
        with EmulatorServer("tiny") as faulty:
            results = outcomes(faulty, urls, faults=FaultConfig(rate=0.5, kinds=kinds, seed=seed))
            return (
                [r[0] for r in results],
                [r[2] for r in results if r[1] == "image/jpeg"],
                faulty.stats.faults,
            )

    first, first_jpegs, first_faults = run(seed=3)
    second, _, second_faults = run(seed=3)
    other, _, _ = run(seed=4)
    assert first == second and first_faults == second_faults  # same seed, same faults
    assert first != other
    assert 0 < sum(first_faults.values()) < len(urls)  # some failed, retries of the same URL succeeded
    with EmulatorServer("tiny") as clean:
        reference = {r[2] for r in outcomes(clean, urls[:2])}
    assert set(first_jpegs) == reference  # a successful answer is byte-identical to a fault-free one


def test_latency_is_added_to_every_request(server):
    server.set_faults(FaultConfig(latency_s=0.15))
    try:
        started = time.monotonic()
        results = outcomes(server, ["/api/v0/m/screens/", "/api/v0/m/projects/"])
        elapsed = time.monotonic() - started
    finally:
        server.set_faults(FaultConfig())
    assert [r[0] for r in results] == [200, 200]
    assert elapsed >= 3 * 0.15  # the warm-up and both requests were delayed


def test_fault_config_rejects_what_it_cannot_do():
    with pytest.raises(ValueError, match="rate"):
        FaultConfig(rate=1.5)
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultConfig(kinds=("500", "teapot"))
    assert FaultConfig(kinds=["500"]).kinds == ("500",)
    # Draws depend only on their inputs (stable across processes), and rate 0 never faults.
    config = FaultConfig(rate=0.5, seed=1)
    draws = [draw_fault(config, "render_image", "GET /x", attempt) for attempt in range(200)]
    assert draws == [draw_fault(config, "render_image", "GET /x", attempt) for attempt in range(200)]
    assert set(draws) == {None, *ALL_FAULT_KINDS}
    assert {draw_fault(FaultConfig(seed=1), "render_image", "GET /x", a) for a in range(50)} == {None}
