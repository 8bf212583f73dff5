"""TAC's float path applies the mean's half of the output weight once per frame (no concatenation);
it must equal the literal concatenation, which the quantized path keeps."""
import pytest
import torch

from limuse_edge.model.blocks import TAC
from limuse_edge.quant import FLOAT, get_recipe


def test_split_weight_tac_equals_concatenation():
    torch.manual_seed(0)
    groups, t = 8, 50
    tac = TAC(4, 16, groups, FLOAT)
    x = torch.randn(3 * groups, t, 4)
    y = tac.transform_act(tac.transform(x))
    c = y.shape[2]
    mean = tac.average_act(tac.average(y.view(-1, groups, t, c).mean(1)))
    mean = mean.unsqueeze(1).expand(-1, groups, t, c).reshape(-1, t, c)
    reference = x + tac.norm(tac.concat_act(tac.concat(torch.cat([y, mean], 2))))
    torch.testing.assert_close(tac(x), reference, rtol=1e-5, atol=1e-5)


def test_split_concat_is_an_explicit_option():
    torch.manual_seed(0)
    tac = TAC(4, 16, 8, FLOAT)
    assert tac.split_concat and not TAC(4, 16, 8, get_recipe("w3a8")).split_concat
    x = torch.randn(16, 30, 4)
    split = tac(x)
    tac.split_concat = False  # as written: the concatenation, as profile.as_written runs it
    torch.testing.assert_close(tac(x), split, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="split_concat with recipe 'w3a8'"):
        TAC(4, 16, 8, get_recipe("w3a8"), split_concat=True)
