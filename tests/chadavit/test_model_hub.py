"""Weights in and out: our model directories and the authors' released Lightning checkpoint."""

from __future__ import annotations

import argparse
import collections
import json
import os
import pickle
import pickletools
import types

import pytest
import torch

from chadavit import from_pretrained, load_released_checkpoint
from chadavit.hub import InertObject, ModelFileError, read_checkpoint


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
    """A Lightning state dict with the documented key names (docs/reference-model.md)."""
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
    """Unpickling this would create `target` through os.makedirs."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.makedirs, (self.target,))


class _ExecExploit(_Exploit):
    """The same through builtins.exec, a global torch does not block by module."""

    def __reduce__(self):
        return (exec, (f"import os; os.makedirs({self.target!r})",))


def test_unknown_globals_become_inert_and_never_run(tmp_path, tiny_model, random_images) -> None:
    student = tiny_model("chadavit_moyen_v1")
    marker = tmp_path / "code-was-executed"
    path = tmp_path / "evil.ckpt"
    _write_ckpt(path, _released_state(student, student), {"payload": _ExecExploit(str(marker))})
    model = load_released_checkpoint(path)
    assert not marker.exists()
    assert repr(read_checkpoint(path)["hyper_parameters"]["payload"]) == "<inert builtins.exec>"
    images = random_images([2, 1])
    with torch.no_grad():
        assert torch.equal(model(images), student(images))


def test_globals_of_blocked_modules_are_refused_without_advice_to_unpickle(tmp_path, tiny_model) -> None:
    student = tiny_model("chadavit_moyen_v1")
    marker = tmp_path / "code-was-executed"
    path = tmp_path / "evil.ckpt"
    _write_ckpt(path, _released_state(student, student), {"payload": _Exploit(str(marker))})
    with pytest.raises(ModelFileError) as error:
        load_released_checkpoint(path)
    message = str(error.value)
    assert str(path) in message and "os.makedirs" in message and "\n" not in message
    assert "weights_only" not in message  # never the advice to load it unrestricted
    assert not marker.exists()


# ----- payloads that try to change objects of this process (issue: a refused file rewrote torch) -----


class _RawOps:
    """Pickle opcodes written verbatim where a value would be: payloads no Python object pickles to."""

    def __init__(self, ops: bytes) -> None:
        self.ops = ops


class _RawPickler(pickle._Pickler):
    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _RawOps):
            self.write(obj.ops)
        else:
            super().save(obj, save_persistent_id)


# torch.save subclasses `pickle_module.Pickler` for its storages: a real checkpoint around the payload.
_RAW_PICKLE = types.SimpleNamespace(__name__="raw_pickle", Pickler=_RawPickler)


def _opcodes(value) -> bytes:
    """`value` as protocol-2 opcodes without PROTO, STOP or memo writes, so it splices anywhere."""
    ops = pickletools.optimize(pickle.dumps(value, protocol=2))
    assert ops[:2] == b"\x80\x02" and ops[-1:] == pickle.STOP
    return ops[2:-1]


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _build_on(module: str, name: str, state) -> _RawOps:
    """GLOBAL module.name, then BUILD with `state`: sets attributes of an object that already exists."""
    return _RawOps(_global(module, name) + _opcodes(state) + pickle.BUILD)


def _setitem_on(module: str, name: str, key, value) -> _RawOps:
    return _RawOps(_global(module, name) + _opcodes(key) + _opcodes(value) + pickle.SETITEM)


NEGATE_EVERY_TENSOR = ({"neg": True},)  # metadata default of _rebuild_tensor_v2: the neg bit
PAYLOADS = {
    "a function's __defaults__": _build_on(
        "torch._utils", "_rebuild_tensor_v2", (None, {"__defaults__": NEGATE_EVERY_TENSOR})
    ),
    "a function's __dict__": _build_on("torch._utils", "_rebuild_parameter", {"hooked": True}),
    "a class's attribute": _build_on("torch.nn.parameter", "Parameter", (None, {"__doc__": "owned"})),
    "a class's __dict__ by state": _build_on("collections", "OrderedDict", {"owned": True}),
    "a module attribute (a dtype)": _build_on("torch", "float32", (None, {"owned": True})),
    "a class by item": _setitem_on("collections", "Counter", "owned", True),
    "the placeholder of an unknown global": _build_on("argparse", "Namespace", (None, {"owned": True})),
}


def _fingerprint(target) -> dict[str, object]:
    """What BUILD or SETITEM could change on `target`: its attributes and function defaults."""
    names = set(dir(target)) | set(getattr(target, "__dict__", {}))
    return {
        name: getattr(target, name, None)
        for name in names
        if name not in {"__dict__", "__weakref__", "__abstractmethods__"}
    } | {"__dict__": dict(getattr(target, "__dict__", {}))}


TARGETS = [
    torch._utils._rebuild_tensor_v2,
    torch._utils._rebuild_parameter,
    torch.nn.Parameter,
    collections.OrderedDict,
    collections.Counter,
    torch.float32,
    argparse.Namespace,
]


@pytest.mark.parametrize("payload", list(PAYLOADS), ids=list(PAYLOADS))
def test_a_refused_checkpoint_changes_nothing_in_the_process(
    payload, tmp_path, tiny_model, random_images
) -> None:
    student = tiny_model("chadavit_moyen_v1", seed=5)
    clean = tmp_path / "clean.ckpt"
    _write_ckpt(clean, _released_state(student, student), argparse.Namespace(lr=0.1))
    evil = tmp_path / "evil.ckpt"
    state = _released_state(student, student) | {"backbone.cls_token": PAYLOADS[payload]}
    torch.save({"state_dict": state}, evil, pickle_module=_RAW_PICKLE)
    before = [_fingerprint(target) for target in TARGETS]
    allowed_before = set(torch.serialization.get_safe_globals())

    with pytest.raises(ModelFileError, match=r"cannot read checkpoint .*evil\.ckpt: refused"):
        load_released_checkpoint(evil)

    assert [_fingerprint(target) for target in TARGETS] == before
    assert set(torch.serialization.get_safe_globals()) == allowed_before  # placeholders were for that load
    assert torch._utils._rebuild_tensor_v2.__defaults__ == (None,)
    # The same process still reads clean files to the right values, with both loaders.
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.arange(4.0)}, plain)
    assert torch.equal(torch.load(plain, weights_only=True)["w"], torch.arange(4.0))
    images = random_images([3, 2], seed=6)
    with torch.no_grad():
        assert torch.equal(load_released_checkpoint(clean)(images), student(images))


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
    with pytest.raises(ValueError, match="num_heads must be a positive integer, got 0"):
        load_released_checkpoint(foreign, num_heads=0)
    with pytest.raises(ModelFileError, match="is a directory"):
        load_released_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_released_checkpoint(tmp_path / "absent.ckpt")


# ----- broken model directories: one error naming the file ----------------------------------------


BROKEN_FILES = {
    "empty weights": ("model.safetensors", b""),
    "garbage weights": ("model.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}" + bytes(64)),
    "truncated weights": ("model.safetensors", None),  # the real file cut in half
    "garbage config": ("config.json", b"\x89PNG\r\n\x1a\n not json"),
    "config that is a list": ("config.json", b"[1, 2]"),
}


@pytest.mark.parametrize("case", list(BROKEN_FILES), ids=list(BROKEN_FILES))
def test_a_broken_model_file_is_one_error_naming_it(case, tmp_path, tiny_model) -> None:
    directory = tiny_model("chadavit_petit").save_pretrained(tmp_path / "model")
    name, content = BROKEN_FILES[case]
    target = directory / name
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2] if content is None else content)
    with pytest.raises(ModelFileError) as error:
        from_pretrained(directory)
    assert str(target) in str(error.value) and "\n" not in str(error.value)


WRONG_TYPES = {
    "img_size": "224",
    "depth": True,
    "embed_dim": 32.5,
    "mlp_ratio": "4",
    "drop_path_rate": None,
    "norm_eps": float("nan"),
    "name": 7,
}


@pytest.mark.parametrize("key", list(WRONG_TYPES))
def test_a_config_value_of_the_wrong_type_is_named(key, tmp_path, tiny_model) -> None:
    directory = tiny_model("chadavit_petit").save_pretrained(tmp_path)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, key: WRONG_TYPES[key]}))
    with pytest.raises(ModelFileError, match=rf"config\.json: invalid configuration .*{key} must be"):
        from_pretrained(directory)


def test_empty_or_truncated_released_checkpoints_name_the_file(tmp_path, tiny_model) -> None:
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"empty\.ckpt: the file is empty"):
        load_released_checkpoint(empty)
    student = tiny_model("chadavit_moyen_v1")
    whole = tmp_path / "whole.ckpt"
    _write_ckpt(whole, _released_state(student, student), {})
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ModelFileError, match=r"cannot read checkpoint .*cut\.ckpt"):
        load_released_checkpoint(cut)
