"""Weights in and out: our model directories and the authors' released Lightning checkpoint."""

from __future__ import annotations

import argparse
import json
import os
import pickle

import pytest
import torch

from chadavit import from_pretrained, load_released_checkpoint
from chadavit.hub import InertObject, read_checkpoint


def test_save_and_load_round_trip_restores_the_model(tmp_path, tiny_model, random_images) -> None:
    model = tiny_model("chadavit_petit", seed=1, max_channels=7, drop_path_rate=0.2)
    target = model.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((target / "config.json").read_text())["name"] == "chadavit_petit"
    restored = from_pretrained(target)
    assert restored.config == model.config and type(restored) is type(model)
    images = random_images([2, 7, 1])
    with torch.no_grad():
        assert torch.equal(restored(images), model(images))
    for name, tensor in model.state_dict().items():
        assert torch.equal(restored.state_dict()[name], tensor), name


def test_round_trip_of_a_baseline(tmp_path, tiny_model, random_images) -> None:
    model = tiny_model("onechannel_vit_tiny", seed=2)
    restored = from_pretrained(model.save_pretrained(tmp_path))
    images = random_images([3, 3])
    with torch.no_grad():
        assert torch.equal(restored(images), model(images))


def test_from_pretrained_names_what_is_wrong(tmp_path, tiny_model) -> None:
    with pytest.raises(FileNotFoundError, match=r"config\.json does not exist"):
        from_pretrained(tmp_path)
    tiny_model("chadavit_petit").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "depth": 3}))
    with pytest.raises(ValueError, match=r"missing keys \['blocks\.2\."):
        from_pretrained(tmp_path)


def _released_state(student, teacher, prefix: str = "backbone.") -> dict[str, torch.Tensor]:
    """A Lightning state dict with the documented key names (reference-model.md)."""
    state = {f"{prefix}{k}": v for k, v in student.state_dict().items()}
    state |= {f"momentum_{prefix}{k}": v for k, v in teacher.state_dict().items()}
    state |= {"head.mlp.0.weight": torch.randn(64, 32), "momentum_head.mlp.0.weight": torch.randn(64, 32)}
    return state


def _write_ckpt(path, state, hyper_parameters) -> None:
    torch.save(
        {"epoch": 3, "global_step": 99, "state_dict": state, "hyper_parameters": hyper_parameters}, path
    )


def test_released_checkpoint_gives_the_models_it_was_made_from(tmp_path, tiny_model, random_images) -> None:
    student = tiny_model("chadavit_moyen_v1", seed=1)
    teacher = tiny_model("chadavit_moyen_v1", seed=2)
    path = tmp_path / "chadavit16-moyen.ckpt"
    _write_ckpt(path, _released_state(student, teacher), {"lr": 0.0005, "arch": "chada_vit"})
    torch.load(path, weights_only=True)  # this file is plain: the weights_only path reads it
    images = random_images([3, 1, 10, 5], seed=4)
    loaded = load_released_checkpoint(path)
    loaded_teacher = load_released_checkpoint(path, weights="teacher", num_heads=2)
    assert loaded.config.name == "chadavit_moyen_v1" and loaded.config.ffn_dim == 64
    assert loaded.config.img_size == 64 and loaded.config.depth == 2
    with torch.no_grad():
        assert torch.equal(loaded(images), student(images))
        assert torch.equal(loaded_teacher(images), teacher(images))
    four_heads = load_released_checkpoint(path, num_heads=4)
    assert four_heads.config.num_heads == 4  # same weights, other head split: a user choice


def test_older_encoder_prefix_and_a_namespace_in_hyper_parameters(
    tmp_path, tiny_model, random_images
) -> None:
    student = tiny_model("chadavit_moyen_v1", seed=3)
    path = tmp_path / "old.ckpt"
    _write_ckpt(path, _released_state(student, student, prefix="encoder."), argparse.Namespace(lr=0.1))
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # so the restricted fallback is what reads it
    checkpoint = read_checkpoint(path)
    assert isinstance(checkpoint["hyper_parameters"], InertObject)
    assert checkpoint["hyper_parameters"]._state == {"lr": 0.1}
    images = random_images([2, 4])
    with torch.no_grad():
        assert torch.equal(load_released_checkpoint(path)(images), student(images))


class _Exploit:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.makedirs, (self.target,))


def test_fallback_never_runs_code_from_the_file(tmp_path, tiny_model) -> None:
    student = tiny_model("chadavit_moyen_v1")
    marker = tmp_path / "code-was-executed"
    path = tmp_path / "evil.ckpt"
    _write_ckpt(path, _released_state(student, student), {"payload": _Exploit(str(marker))})
    model = load_released_checkpoint(path)
    assert not marker.exists()
    assert model.config.name == "chadavit_moyen_v1"


def test_missing_and_unknown_keys_are_listed(tmp_path, tiny_model) -> None:
    student = tiny_model("chadavit_moyen_v1")
    state = _released_state(student, student)
    del state["backbone.blocks.1.linear2.bias"]
    state["backbone.blocks.1.extra_gate"] = torch.zeros(3)
    path = tmp_path / "bad.ckpt"
    _write_ckpt(path, state, {})
    with pytest.raises(ValueError) as error:
        load_released_checkpoint(path)
    assert "missing keys ['blocks.1.linear2.bias']" in str(error.value)
    assert "unexpected keys ['blocks.1.extra_gate']" in str(error.value)


def test_unreadable_or_foreign_files_fail_clearly(tmp_path) -> None:
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_released_checkpoint(garbage)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"model.fc.weight": torch.zeros(2, 2)}}, foreign)
    with pytest.raises(ValueError, match="no student backbone"):
        load_released_checkpoint(foreign)
    with pytest.raises(ValueError, match="weights must be 'student' or 'teacher'"):
        load_released_checkpoint(foreign, weights="ema")
    with pytest.raises(FileNotFoundError):
        load_released_checkpoint(tmp_path / "absent.ckpt")
