"""`chadavit.preprocess`: raw arrays of any dtype -> what the model expects, the choice explicit;
and the input contract a saved model carries in config.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import chadavit
from chadavit import InputContract, Window, fit_window, preprocess

# Two images of one cell line; the second's channel 1 is 3x brighter (the phenotype).
DIM = np.array([[[0, 1000], [2000, 4000]], [[0, 500], [1000, 2000]]], dtype=np.uint16)
BRIGHT = DIM.copy()
BRIGHT[1] *= 3


def test_dtype_and_dataset_modes_keep_a_3x_brighter_channel_minmax_erases_it() -> None:
    for mode, kwargs in (("dtype", {}), ("dataset", {"window": fit_window([DIM, BRIGHT], (0, 100))})):
        dim, bright = preprocess(DIM, mode, **kwargs), preprocess(BRIGHT, mode, **kwargs)
        torch.testing.assert_close(bright[1], 3 * dim[1], msg=mode)
        torch.testing.assert_close(bright[0], dim[0])
    torch.testing.assert_close(preprocess(DIM, "minmax"), preprocess(BRIGHT, "minmax"))


def test_every_mode_returns_float32_in_unit_range() -> None:
    window = Window(low=(0.0, 0.0), high=(4000.0, 2000.0))
    for mode, kwargs in (
        ("dtype", {}),
        ("minmax", {}),
        ("window", {"window": window}),
        ("window", {"window": (0, 1000)}),
    ):
        out = preprocess(BRIGHT, mode, **kwargs)
        assert out.dtype == torch.float32 and out.shape == (2, 2, 2)
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert preprocess(np.full((4, 4), 255, np.uint8)).eq(1.0).all()  # (H, W): one channel
    assert preprocess(np.full((1, 64, 48), 7, np.int16), size=32).shape == (1, 32, 32)
    torch.testing.assert_close(
        preprocess(DIM, "window", window=window)[0], torch.tensor(DIM[0] / 4000.0).float()
    )


def test_fit_window_uses_percentiles_over_all_training_images() -> None:
    images = [np.arange(100, dtype=np.uint16).reshape(1, 10, 10) + 100 * i for i in range(3)]
    window = fit_window(images, (0, 100))
    assert window.low == (0.0,) and window.high == (299.0,)
    with pytest.raises(ValueError, match="images have 1 and 2 channels"):
        fit_window([images[0], DIM])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: preprocess(DIM, "window"), "needs a window"),
        (lambda: preprocess(DIM, "gamma"), "unknown intensity mode 'gamma'"),
        (lambda: preprocess(np.zeros((2, 2, 2, 2))), r"expected a \(C, H, W\) or \(H, W\) image"),
        (lambda: preprocess(np.array([[[np.nan]]])), "NaN or infinite"),
        (lambda: preprocess(DIM, "window", window=(0, 10, 20)), "too many values|expected 2"),
        (lambda: Window(low=(5.0,), high=(5.0,)), "high must exceed its low"),
    ],
)
def test_bad_inputs_are_named(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_a_saved_model_carries_its_input_contract(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = chadavit.create_model(
        "chadavit_petit", embed_dim=32, depth=1, num_heads=2, img_size=32, patch_size=8
    )
    assert chadavit.input_contract(model) == InputContract(img_size=32)
    model.save_pretrained(tmp_path / "m")
    document = json.loads((tmp_path / "m" / "config.json").read_text())
    assert document["preprocessing"]["input_range"] == [0.0, 1.0]
    assert document["preprocessing"]["intensity"] == "window"
    loaded = chadavit.from_pretrained(tmp_path / "m")
    assert loaded.pretrained_cfg == InputContract(img_size=32)
    # A config.json written before the contract existed still loads, with the default contract.
    del document["preprocessing"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(document))
    assert chadavit.from_pretrained(tmp_path / "m").pretrained_cfg.img_size == 32
    document["preprocessing"] = {"input_range": [0, 1], "gamma": 2}
    (tmp_path / "m" / "config.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="unknown preprocessing fields"):
        chadavit.from_pretrained(tmp_path / "m")
