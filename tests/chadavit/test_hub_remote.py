"""Weights by Hugging Face Hub id, offline: a Hub cache laid out by the test (no network), read
through huggingface_hub with HF_HUB_OFFLINE; the released checkpoint's MD5 reported."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from chadavit import from_pretrained, load_released_checkpoint
from chadavit.hub_remote import RELEASED_MD5, HubError, is_hub_id

huggingface_hub = pytest.importorskip("huggingface_hub")
hub_constants = pytest.importorskip("huggingface_hub.constants")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # The constant is read when huggingface_hub is imported: set both, as a user's shell would.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)


def lay_out_cache(cache: Path, repo_id: str, files: dict[str, Path], revision: str = "main") -> None:
    """The HF cache layout: models--org--name/{refs/<revision>, snapshots/<commit>/<files>}."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        shutil.copy(source, snapshot / name)


def test_from_pretrained_by_hub_id_reads_the_cache_offline(
    tmp_path, tiny_model, random_images, offline
) -> None:
    model = tiny_model("chadavit_petit", seed=5)
    saved = model.save_pretrained(tmp_path / "saved")
    cache = tmp_path / "hf-cache"
    lay_out_cache(cache, "lab/chadavit-petit", {n: saved / n for n in ("config.json", "model.safetensors")})
    assert is_hub_id("lab/chadavit-petit") and not is_hub_id(saved)
    loaded = from_pretrained("lab/chadavit-petit", cache_dir=cache)
    images = random_images([2, 3])
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
    with pytest.raises(HubError, match="cannot get lab/absent from the Hugging Face Hub"):
        from_pretrained("lab/absent", cache_dir=cache)


def test_released_checkpoint_by_hub_id_and_its_md5(tmp_path, tiny_model, offline, caplog) -> None:
    student = tiny_model("chadavit_moyen_v1", seed=1)
    ckpt = tmp_path / "chadavit16-moyen.ckpt"
    state = {f"backbone.{k}": v for k, v in student.state_dict().items()}
    state |= {f"momentum_backbone.{k}": v for k, v in student.state_dict().items()}
    torch.save({"epoch": 1, "state_dict": state}, ckpt)
    cache = tmp_path / "hf-cache"
    lay_out_cache(cache, "nicoboou/chadavit16-moyen", {"chadavit16-moyen.ckpt": ckpt})
    with caplog.at_level(logging.WARNING, logger="chadavit.hub"):
        model = load_released_checkpoint("nicoboou/chadavit16-moyen", cache_dir=cache)
    assert model.config.num_heads == 2 and model.config.name == "chadavit_moyen_v1"
    assert model.is_authors_release is False and len(model.checkpoint_md5) == 32
    assert f"expected {RELEASED_MD5}" in caplog.text  # a file that is not the release says so
    # Two .ckpt files: the caller must name one.
    lay_out_cache(cache, "lab/two", {"a.ckpt": ckpt, "b.ckpt": ckpt})
    with pytest.raises(HubError, match=r"holds 2 \.ckpt files \(a\.ckpt, b\.ckpt\); name one"):
        load_released_checkpoint("lab/two", cache_dir=cache)
    assert load_released_checkpoint("lab/two", filename="b.ckpt", cache_dir=cache).config.depth == 2
