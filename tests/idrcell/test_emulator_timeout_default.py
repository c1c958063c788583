"""The emulator's "timeout" fault: one default stall, and a retry for the client whatever its timeout.

A stall shorter than the client's timeout used to end in the real answer, so a "flaky server"
only slowed the build and its summary counted no retries (the stall defaulted to 30 s in the CLI,
2 s in FaultConfig, against the client's 60 s)."""

from __future__ import annotations

import asyncio

import typer.main

from idrcell.cli import app
from idrcell.client import ClientConfig, IDRClient
from idrcell.emulator import EmulatorServer, FaultConfig
from idrcell.emulator.faults import DEFAULT_TIMEOUT_SLEEP_S


def test_cli_and_fault_config_share_one_timeout_sleep_default() -> None:
    emulator = typer.main.get_command(app).commands["emulator"]  # type: ignore[attr-defined]
    (option,) = [p for p in emulator.params if p.name == "timeout_sleep_s"]
    assert option.default == FaultConfig().timeout_sleep_s == DEFAULT_TIMEOUT_SLEEP_S


def test_a_timeout_fault_is_a_counted_retry_even_for_a_patient_client() -> None:
    faults = FaultConfig(rate=0.5, kinds=("timeout",), timeout_sleep_s=0.2, seed=3)
    with EmulatorServer("tiny") as server:
        image_ids = sorted(i.id for i in server.catalogue.images.values() if not i.forbidden and i.width > 0)[
            :4
        ]

        async def fetch(with_faults: bool) -> tuple[list[object], dict[str, int]]:
            server.set_faults(faults if with_faults else FaultConfig())
            # 10 s is far longer than the 0.2 s stall: the client's own timeout never fires.
            config = ClientConfig(
                base_url=server.base_url, timeout_s=10.0, backoff_base_s=0.01, max_retries=10
            )
            async with IDRClient(config) as client:
                answers = await asyncio.gather(
                    *(client.get_json(f"webgateway/imgData/{i}/") for i in image_ids)
                )
                return list(answers), dict(client.stats.retries)

        clean, _ = asyncio.run(fetch(False))
        faulty, retries = asyncio.run(fetch(True))
        injected = server.stats.faults.get("timeout", 0)
    assert faulty == clean
    assert injected > 0
    assert retries.get("504", 0) == injected, retries  # each stalled request ended as a gateway time-out
