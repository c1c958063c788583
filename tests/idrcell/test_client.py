"""The IDR client against the emulator: paging past the server's cap, every fault kind, 403s."""

from __future__ import annotations

import asyncio
import time

import pytest

from idrcell.client import ClientConfig, IDRClient, PermanentHTTPError, TransientFailure
from idrcell.emulator import EmulatorServer, FaultConfig
from idrcell.experiments import Experiment
from idrcell.listing import list_experiment

MITOSIS = Experiment("idr0901-emu-mitosis", "screenA")  # found by name, not id
ORGANELLES = Experiment("idr0902-emu-organelles", "experimentA", id=902)


def config(server: EmulatorServer, **overrides: object) -> ClientConfig:
    base = {
        "base_url": server.base_url,
        "timeout_s": 0.5,
        "backoff_base_s": 0.01,
        "max_retries": 10,
        "page_size": 1000,
    }
    return ClientConfig(**{**base, **overrides})  # type: ignore[arg-type]


async def fetch_some(client: IDRClient, image_ids: list[int]) -> list[object]:
    """imgData and the first channel's JPEG of each image, as the stager asks for them."""
    query = [("c", "1$FFFFFF"), ("m", "g"), ("q", "1.0")]
    calls = []
    for image_id in image_ids:
        calls.append(client.get_json(f"webgateway/imgData/{image_id}/"))
        calls.append(client.get_jpeg(f"webgateway/render_image/{image_id}/0/0/", query))
    return list(await asyncio.gather(*calls))


def readable_images(server: EmulatorServer, count: int) -> list[int]:
    catalogue = server.catalogue
    ids = [
        i.id for i in catalogue.images.values() if not i.forbidden and i.width > 0 and len(i.channels) <= 10
    ]
    return sorted(ids)[:count]


def test_paging_trusts_meta_limit_beyond_the_server_cap() -> None:
    async def listings(server: EmulatorServer, page_size: int) -> tuple[object, object, int]:
        async with IDRClient(config(server, page_size=page_size)) as client:
            screen = await list_experiment(client, MITOSIS)
            project = await list_experiment(client, ORGANELLES)
            return screen, project, client.stats.requests

    with EmulatorServer("tiny") as roomy:
        screen, project, _ = asyncio.run(listings(roomy, 1000))
        project_images = len(roomy.catalogue.container_images(roomy.catalogue.projects[0]))
    with EmulatorServer("tiny", max_limit=2) as capped:
        capped_screen, capped_project, requests = asyncio.run(listings(capped, 1000))
        pages = capped.stats.requests
    assert capped_screen == screen and capped_project == project
    assert len(project.candidates) == project_images > 20 and len(screen.candidates) >= 20
    # Every project image listed at 2 per page needs at least project_images / 2 page requests.
    assert pages["dataset_images"] >= project_images // 2 and requests > project_images // 2
    assert screen.study_info == {
        "imaging_method": "fluorescence microscopy",
        "organism": "Homo sapiens",
        "cell_line": "HeLa",
    }


@pytest.mark.parametrize("kind", ["500", "502", "504", "timeout", "truncated", "concurrency", "429"])
def test_every_fault_kind_is_retried_to_the_same_answer(kind: str) -> None:
    faults = FaultConfig(rate=0.5, kinds=(kind,), timeout_sleep_s=0.6, backoff_ms=10, retry_after_s=0, seed=3)
    with EmulatorServer("tiny") as server:
        images = readable_images(server, 4)

        async def run(with_faults: bool) -> tuple[list[object], dict[str, int]]:
            server.set_faults(faults if with_faults else FaultConfig())
            async with IDRClient(config(server, timeout_s=0.3)) as client:
                return await fetch_some(client, images), dict(client.stats.retries)

        clean, no_retries = asyncio.run(run(False))
        faulty, retries = asyncio.run(run(True))
        injected = server.stats.faults
    assert not no_retries
    assert faulty == clean
    assert injected.get(kind, 0) > 0 and sum(retries.values()) >= injected[kind]
    expected_reason = {"truncated": "truncated", "concurrency": "concurrency"}.get(kind, kind)
    assert retries.get(expected_reason, 0) > 0, retries


@pytest.mark.parametrize(("kind", "wait_s"), [("429", 1.0), ("concurrency", 0.3)])
def test_retry_after_and_backoff_are_honoured(kind: str, wait_s: float) -> None:
    faults = FaultConfig(rate=0.5, kinds=(kind,), backoff_ms=300, retry_after_s=1, seed=5)
    with EmulatorServer("tiny", faults=faults) as server:
        image_id = readable_images(server, 1)[0]

        async def one_image() -> tuple[float, int]:
            # backoff_base_s tiny: any wait longer than a few ms must come from the server's instruction.
            async with IDRClient(config(server, timeout_s=5.0, backoff_base_s=0.001)) as client:
                client.stats.retries.clear()
                started = time.monotonic()
                for channel in range(1, 4):
                    query = [("c", f"{channel}$FFFFFF"), ("m", "g"), ("q", "1.0")]
                    await client.get_jpeg(f"webgateway/render_image/{image_id}/0/0/", query)
                return time.monotonic() - started, client.stats.retries[kind]

        elapsed, retried = asyncio.run(one_image())
    assert retried >= 1
    assert elapsed >= retried * wait_s * 0.9


def test_forbidden_images_fail_permanently_and_exhausted_retries_say_so() -> None:
    with EmulatorServer("tiny") as server:
        forbidden = next(i.id for i in server.catalogue.images.values() if i.forbidden)

        async def forbidden_call() -> None:
            async with IDRClient(config(server)) as client:
                await client.get_json(f"webgateway/imgData/{forbidden}/")

        with pytest.raises(PermanentHTTPError) as caught:
            asyncio.run(forbidden_call())
        assert caught.value.status == 403
        assert server.stats.requests.get("imgData") == 1  # a 403 is never retried

        server.set_faults(FaultConfig(rate=1.0, kinds=("502",)))

        async def hopeless() -> None:
            async with IDRClient(config(server, max_retries=2)) as client:
                await client.get_json("api/v0/m/screens/")

        with pytest.raises(TransientFailure, match="failed 3 times"):
            asyncio.run(hopeless())


def test_the_session_cookie_and_user_agent_are_sent() -> None:
    # The emulator answers 403 "Not logged in" without the cookie set by the warm-up call.
    with EmulatorServer("tiny", require_session=True) as server:

        async def listing() -> int:
            async with IDRClient(config(server)) as client:
                return len((await list_experiment(client, ORGANELLES)).candidates)

        assert asyncio.run(listing()) == len(server.catalogue.container_images(server.catalogue.projects[0]))
        stats = server.stats
    assert stats.sessions == 1
    assert all(agent.startswith("idrcell/") for agent in stats.user_agents)
