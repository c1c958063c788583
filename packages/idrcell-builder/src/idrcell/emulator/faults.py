"""Switchable, deterministic fault injection for the emulator.

IDR under load answers nginx 502/504 pages, slow responses, 429s and the rendering engine's
`ConcurrencyException`; a client must survive all of them. Each request draws its fault from a hash
of (seed, method + URL, how many times that exact URL was asked for before), so a retry of the same
URL draws again (faults are transient) and a run is reproducible whatever order concurrent requests
arrive in.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

ALL_FAULT_KINDS: tuple[str, ...] = ("500", "502", "504", "timeout", "truncated", "concurrency", "429")

# Kinds that only make sense on some routes: a truncated body is a JPEG (or an OME-Zarr file of the
# object store) cut short, and the rendering engine's ConcurrencyException only comes from imgData
# and render_* (docs/idr-api.md).
_ROUTE_LIMITED_KINDS = {
    "truncated": frozenset({"render_image", "render_image_region", "zarr"}),
    "concurrency": frozenset({"imgData", "render_image", "render_image_region"}),
}


# The one default stall of a "timeout" fault (FaultConfig and `idrcell emulator --timeout-sleep`):
# short, so that a flaky demo stays quick. After the stall the answer is IDR's gateway 504, so the
# fault costs the client one retry whether or not its own timeout fired first.
DEFAULT_TIMEOUT_SLEEP_S = 2.0


@dataclass(frozen=True)
class FaultConfig:
    """What goes wrong, how often, and how badly.

    rate: probability in [0, 1] that a request gets a fault (of a kind applicable to its route).
    kinds: the fault kinds to draw from (see ALL_FAULT_KINDS).
    latency_s: extra delay added to every request.
    timeout_sleep_s: how long a "timeout" fault stalls before it answers 504 Gateway Time-out (a
        client whose timeout is shorter gives up first; either way the request is retried).
    backoff_ms: the `backOff` a ConcurrencyException asks for.
    retry_after_s: the `Retry-After` header of a 429.
    seed: seeds the fault draws.
    """

    rate: float = 0.0
    kinds: tuple[str, ...] = ALL_FAULT_KINDS
    latency_s: float = 0.0
    timeout_sleep_s: float = DEFAULT_TIMEOUT_SLEEP_S
    backoff_ms: int = 50
    retry_after_s: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within [0, 1], got {self.rate}")
        unknown = [kind for kind in self.kinds if kind not in ALL_FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; choose from {', '.join(ALL_FAULT_KINDS)}")
        if self.latency_s < 0 or self.timeout_sleep_s < 0 or self.backoff_ms < 0 or self.retry_after_s < 0:
            raise ValueError("fault latency, timeout sleep, backoff and retry-after must not be negative")
        # Accept any iterable of kinds (e.g. a list from a CLI) but store a hashable tuple.
        object.__setattr__(self, "kinds", tuple(self.kinds))


def _unit_draw(seed: int, key: str, attempt: int, salt: str) -> float:
    """A uniform number in [0, 1) that depends only on its arguments (stable across processes)."""
    digest = hashlib.blake2b(f"{seed}\x1f{salt}\x1f{attempt}\x1f{key}".encode(), digest_size=8).digest()
    return struct.unpack(">Q", digest)[0] / 2**64


def applicable_kinds(config: FaultConfig, route: str) -> tuple[str, ...]:
    """The configured kinds that can happen on `route` (a route name of the server)."""
    return tuple(
        kind
        for kind in config.kinds
        if kind not in _ROUTE_LIMITED_KINDS or route in _ROUTE_LIMITED_KINDS[kind]
    )


def draw_fault(config: FaultConfig, route: str, url_key: str, attempt: int) -> str | None:
    """The fault kind for the `attempt`-th request (0-based) of `url_key` on `route`, or None."""
    if config.rate <= 0.0:
        return None
    kinds = applicable_kinds(config, route)
    if not kinds or _unit_draw(config.seed, url_key, attempt, "rate") >= config.rate:
        return None
    pick = _unit_draw(config.seed, url_key, attempt, "kind")
    return kinds[min(int(pick * len(kinds)), len(kinds) - 1)]
