"""Hatchling metadata hook shared by the three packages.

The single source of truth for the version is the monorepo's ./VERSION file. This hook sets
each package's version from it and pins sibling packages to exactly that version, so the three
packages can only ever be installed together at one version.
"""

from __future__ import annotations

from pathlib import Path

from hatchling.metadata.plugin.interface import MetadataHookInterface

SIBLINGS = ("idrcell-builder", "chadavit-model", "chadavit-bench")


def read_version(package_root: str) -> str:
    return (Path(package_root).resolve().parents[1] / "VERSION").read_text().strip()


class SharedVersionHook(MetadataHookInterface):
    def update(self, metadata: dict) -> None:
        version = read_version(self.root)
        metadata["version"] = version
        siblings = self.config.get("siblings", [])
        if not siblings:
            return
        unknown = [name for name in siblings if name not in SIBLINGS]
        if unknown:
            raise ValueError(f"unknown sibling packages {unknown}; expected some of {SIBLINGS}")
        # With siblings, `dependencies` is dynamic: the hook config lists the external ones.
        external = list(self.config.get("dependencies", []))
        metadata["dependencies"] = [*external, *(f"{name}=={version}" for name in siblings)]
