"""An offline IDR-compatible server for tests and demos (`idrcell emulator`).

It honours the routes and quirks the builder relies on (docs/emulator.md), serves generated
catalogues ("tiny", "demo", "hostile" or a JSON spec) with synthetic microscopy pixels, and injects
deterministic, switchable faults:

    from idrcell.emulator import EmulatorServer, FaultConfig, load_catalogue

Names are imported on first use, so `idrcell --help` does not pay for aiohttp and scikit-image.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ALL_FAULT_KINDS": "idrcell.emulator.faults",
    "FaultConfig": "idrcell.emulator.faults",
    "BUILTIN_CATALOGUES": "idrcell.emulator.catalogue",
    "Catalogue": "idrcell.emulator.catalogue",
    "CatalogueSpecError": "idrcell.emulator.catalogue",
    "load_catalogue": "idrcell.emulator.catalogue",
    "EmulatorServer": "idrcell.emulator.server",
    "EmulatorStats": "idrcell.emulator.server",
    "create_app": "idrcell.emulator.server",
}
__all__ = [
    "ALL_FAULT_KINDS",
    "BUILTIN_CATALOGUES",
    "Catalogue",
    "CatalogueSpecError",
    "EmulatorServer",
    "EmulatorStats",
    "FaultConfig",
    "create_app",
    "load_catalogue",
]

if TYPE_CHECKING:
    from idrcell.emulator.catalogue import BUILTIN_CATALOGUES, Catalogue, CatalogueSpecError, load_catalogue
    from idrcell.emulator.faults import ALL_FAULT_KINDS, FaultConfig
    from idrcell.emulator.server import EmulatorServer, EmulatorStats, create_app


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'idrcell.emulator' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
