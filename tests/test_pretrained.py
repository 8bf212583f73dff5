import pytest
import torch

from limuse_edge import from_pretrained
from limuse_edge.pretrained import available, pretrained_info


@pytest.mark.parametrize("name, recipe", [("limuse_k32_float", "float"), ("limuse_k32_w3a8", "w3a8"),
                                          ("limuse_k32_w3a8_po2", "w3a8-po2"),
                                          ("limuse_k32_w3a8_po2_inorm", "w3a8-po2-inorm")])
def test_bundled_model_loads_offline_and_runs(name, recipe):
    assert name in available(), f"{name} is not bundled in limuse_edge/pretrained"
    model = from_pretrained(name)
    assert model.recipe.name == recipe and model.config.groups == 32
    info = pretrained_info(name)
    assert info["evaluate"]["n_utterances"] > 0 and info["training"]["steps"] > 0
    torch.manual_seed(0)
    with torch.no_grad():
        out = model(0.1 * torch.randn(1, 2, 4000), torch.randn(1, 512), torch.randn(1, 7, 256))
    assert out.shape == (1, 4000) and torch.isfinite(out).all()


def test_unknown_pretrained_name_lists_the_bundled_ones():
    with pytest.raises(ValueError, match=r"unknown model 'nope'; bundled models are \["):
        from_pretrained("nope")
