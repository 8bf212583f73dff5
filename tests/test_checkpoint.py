"""Checkpoints: round trip, float-to-quantized loading, and clear refusals."""
from __future__ import annotations

import pytest
import torch

from limuse_edge.checkpoint import (CheckpointError, build_model, convert_recipe, load_checkpoint, read_checkpoint,
                                   save_checkpoint)
from limuse_edge.config import get_preset
from limuse_edge.quant import is_quant_layer


def _inputs(n_samples=400):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(1, 2, n_samples, generator=gen), torch.randn(1, 512, generator=gen), \
        torch.randn(1, 5, 256, generator=gen)


def _perturb(model):
    """Move every parameter away from its initial value, so a load that silently re-initialises fails."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("recipe", ["float", "w3a8"])
def test_round_trip_gives_the_same_model_and_outputs(recipe, tmp_path):
    model = _perturb(build_model("tiny", recipe))
    model.train()(*_inputs())  # initialises Brevitas' scales
    model.eval()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model, meta={"step": 7})
    loaded, ckpt = load_checkpoint(path)
    assert loaded.config == model.config and loaded.recipe == model.recipe
    assert ckpt["meta"] == {"step": 7}
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(*_inputs()), model(*_inputs()), rtol=0, atol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind


def test_float_checkpoint_initialises_a_quantized_model(tmp_path):
    model = _perturb(build_model("tiny"))
    save_checkpoint(tmp_path / "float.pt", model)
    quantized = convert_recipe(load_checkpoint(tmp_path / "float.pt")[0], "w3a8")
    assert quantized.recipe.name == "w3a8"
    assert sum(is_quant_layer(m) for m in quantized.modules()) == 76
    float_state = model.state_dict()
    for key, value in quantized.state_dict().items():
        if key in float_state:
            assert torch.equal(value, float_state[key]), key
    with torch.no_grad():  # the 3-bit weights are the float weights rounded to the scale's grid
        for layer in (m for m in quantized.modules() if is_quant_layer(m)):
            quant_weight = layer.quant_weight()
            in_range = layer.weight.abs() <= 3 * quant_weight.scale
            error = (quant_weight.value - layer.weight).abs()
            assert in_range.any() and (error[in_range] <= quant_weight.scale / 2 + 1e-6).all()


def test_quantized_checkpoint_cannot_change_recipe(tmp_path):
    save_checkpoint(tmp_path / "q.pt", build_model("tiny", "w3a8"))
    with pytest.raises(CheckpointError, match=r"trained with recipe 'w3a8'; it cannot be loaded as 'w4a8'"):
        convert_recipe(load_checkpoint(tmp_path / "q.pt")[0], "w4a8")


def test_a_config_mismatch_is_reported_with_the_differing_fields(tmp_path):
    save_checkpoint(tmp_path / "m.pt", build_model("tiny"))
    with pytest.raises(CheckpointError, match=r"another model configuration.*'n_filters': \(16, 128\)"):
        load_checkpoint(tmp_path / "m.pt", config=get_preset("limuse_k32"))


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"^checkpoint: no such file .*nothing\.pt"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_a_truncated_file_is_refused(tmp_path):
    save_checkpoint(tmp_path / "m.pt", build_model("tiny"))
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"^checkpoint: cannot read .*cut\.pt"):
        read_checkpoint(tmp_path / "cut.pt")


def test_a_foreign_torch_file_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"is not a limuse-edge checkpoint"):
        read_checkpoint(tmp_path / "other.pt")


def test_a_state_dict_of_another_architecture_is_refused(tmp_path):
    model = build_model("tiny")
    save_checkpoint(tmp_path / "m.pt", model)
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    del ckpt["state_dict"]["mask.weight"]
    torch.save(ckpt, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match=r"does not fit the model: missing \['mask.weight'\]"):
        load_checkpoint(tmp_path / "broken.pt")
