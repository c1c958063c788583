"""Model files by Hugging Face Hub id, through `huggingface_hub` (an optional dependency).

`from_pretrained("org/name")` and `load_released_checkpoint("nicoboou/chadavit16-moyen")` resolve
the id with `huggingface_hub`: the user's HF cache (`HF_HOME`, or `cache_dir`), revisions (a branch,
tag or commit), `HF_HUB_OFFLINE=1` and tokens all work as for any Hub model. A local path always
wins over an id of the same spelling. Nothing here runs unless a name is not a local path.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

# The authors' released checkpoint, per their HOW_TO_USE.ipynb (github.com/nicoboou/chadavit).
RELEASED_MD5 = "e8a24ac58b8e34bdce10e0024d507f2e"
RELEASED_REPO = "nicoboou/chadavit16-moyen"
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class HubError(ValueError):
    """A Hub id that cannot be resolved (not installed, offline and not cached, no such repo or file)."""


def is_hub_id(name: str | Path) -> bool:
    """'org/name' that is not an existing local path."""
    text = str(name)
    return bool(_REPO_ID.match(text)) and not Path(text).exists()


def _hub():  # the module; imported only when an id is used
    try:
        import huggingface_hub
    except ImportError as error:
        raise HubError(
            "loading by Hub id needs huggingface_hub: pip install 'chadavit-model[hub]' (or huggingface_hub)"
        ) from error
    return huggingface_hub


def download_model_dir(
    repo_id: str, revision: str | None = None, cache_dir: str | Path | None = None
) -> Path:
    """The snapshot folder holding `config.json` and `model.safetensors` of a Hub model repo."""
    hub = _hub()
    try:
        folder = hub.snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=["config.json", "model.safetensors"],
        )
    except Exception as error:  # offline and not cached, unknown repo or revision, network
        raise HubError(f"cannot get {repo_id} from the Hugging Face Hub: {_reason(error)}") from error
    return Path(folder)


def download_checkpoint(
    repo_id: str,
    filename: str | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """A `.ckpt` of a Hub repo: `filename`, else the repo's only `.ckpt` file."""
    hub = _hub()
    try:
        if filename is not None:
            return Path(hub.hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir))
        folder = Path(
            hub.snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=["*.ckpt"])
        )
    except Exception as error:
        raise HubError(f"cannot get {repo_id} from the Hugging Face Hub: {_reason(error)}") from error
    found = sorted(folder.rglob("*.ckpt"))
    if len(found) != 1:
        names = ", ".join(str(p.relative_to(folder)) for p in found) or "none"
        raise HubError(f"{repo_id} holds {len(found)} .ckpt files ({names}); name one with filename=")
    return found[0]


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def file_md5(path: Path) -> str:
    digest = hashlib.md5()  # a published checksum, not security
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
