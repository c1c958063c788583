"""Hatchling build hook: put the repository's condor/scrape.sub and scrape.sh into the wheel.

The two files exist once, in the repository's condor/ (where HTCondor users look for them); a wheel
carries them as `idrcell/data/condor/` so that an installed `idrcell build --executor condor` can
submit them. An editable install gets no copy: `idrcell.condor.packaged_condor_dir` then finds the
repository's condor/ beside the source tree it runs from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

CONDOR_FILES = ("scrape.sub", "scrape.sh")


class CondorFilesHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        # Like packages/version_hook.py, the package is built from inside the repository.
        source = Path(self.root).resolve().parents[1] / "condor"
        for name in CONDOR_FILES:
            path = source / name
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing; the wheel ships it as idrcell/data/condor/{name}"
                )
            build_data["force_include"][str(path)] = f"idrcell/data/condor/{name}"
