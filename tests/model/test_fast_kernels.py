"""The training kernels (model/fast.py) give the plain layers' loss and gradients on a fixed batch."""
from __future__ import annotations

import pytest
import torch

from limuse_edge.checkpoint import build_model
from limuse_edge.metrics import neg_si_snr_loss
from limuse_edge.model.fast import fast_kernels
from limuse_edge.quant import calibrate

SAMPLES, FRAMES = 8000, 13  # 0.5 s of audio, its lip frames


def _fixed_batch(batch: int = 2) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"mixture": torch.randn(batch, 2, SAMPLES, generator=g),
            "voiceprint": torch.randn(batch, 512, generator=g),
            "visual": torch.randn(batch, FRAMES, 256, generator=g),
            "target": torch.randn(batch, SAMPLES, generator=g)}


def _model(recipe: str, batch: dict, dtype: torch.dtype):
    torch.manual_seed(0)
    model = build_model("tiny", recipe)
    inputs = {k: batch[k] for k in ("mixture", "voiceprint", "visual")}
    if model.recipe.quantized:
        calibrate(model, [inputs])
    return model.to(dtype).train()


def _loss_and_grads(model, batch: dict, dtype: torch.dtype):
    model.zero_grad(set_to_none=True)
    est = model(*(batch[k].to(dtype) for k in ("mixture", "voiceprint", "visual")))
    loss = neg_si_snr_loss(est, batch["target"].to(dtype))
    nodes = _graph_nodes(loss.grad_fn)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, nodes


def _graph_nodes(fn) -> set[str]:
    seen, todo, names = set(), [fn], set()
    while todo:
        f = todo.pop()
        if f is None or f in seen:
            continue
        seen.add(f)
        names.add(type(f).__name__)
        todo.extend(next_fn for next_fn, _ in f.next_functions)
    return names


FAST_NODES = {"_PReLUBackward", "_LinearBackward", "_DepthwiseConvChannelsLastBackward"}


@pytest.mark.parametrize("recipe, dtype, expected_nodes", [
    ("float", torch.float64, FAST_NODES),
    ("w3a8", torch.float64, FAST_NODES | {"_FakeQuantBackward"}),
    # IntegerNorm's forward returns float32 by definition, so this recipe is compared in float32.
    ("w3a8-po2-inorm", torch.float32, FAST_NODES | {"_FakeQuantBackward"}),
])
def test_fast_kernels_give_the_plain_loss_and_gradients(recipe, dtype, expected_nodes):
    batch = _fixed_batch()
    model = _model(recipe, batch, dtype)
    plain_loss, plain_grads, plain_nodes = _loss_and_grads(model, batch, dtype)
    with fast_kernels():
        fast_loss, fast_grads, fast_nodes = _loss_and_grads(model, batch, dtype)

    assert expected_nodes <= fast_nodes, f"fast path not taken: missing {expected_nodes - fast_nodes}"
    assert not expected_nodes & plain_nodes, "fast kernels ran outside fast_kernels()"
    assert fast_grads.keys() == plain_grads.keys()
    assert fast_loss == pytest.approx(plain_loss, rel=1e-12 if dtype == torch.float64 else 1e-6)
    # Gradients within rounding of the largest gradient of the same tensor (a few are sums that cancel
    # to nearly zero, e.g. the decoder bias under a zero-mean loss; they are judged against the model's
    # largest gradient). float32: a quantizer scale's gradient sums g * (q - x / s) over the whole
    # tensor, terms that cancel, so it keeps only a few significant digits in either path.
    largest = max(float(g.abs().max()) for g in plain_grads.values())
    rtol = 1e-9 if dtype == torch.float64 else 5e-2
    for name, plain in plain_grads.items():
        tol = rtol * float(plain.abs().max()) + rtol * 1e-3 * largest
        if dtype == torch.float32 and "scaling_impl" not in name:
            tol = 1e-3 * float(plain.abs().max()) + 1e-6 * largest
        err = float((fast_grads[name] - plain).abs().max())
        assert err <= tol, f"{name}: fast and plain gradients differ by {err:.3g} (allowed {tol:.3g})"


def test_fast_kernels_are_off_by_default_and_restored():
    from limuse_edge.model import fast
    assert not fast.active()
    with fast_kernels():
        assert fast.active()
        with fast_kernels(False):
            assert not fast.active()
        assert fast.active()
    assert not fast.active()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_fake_quantization_equals_the_eager_kernel(dtype, monkeypatch):
    from limuse_edge.model import fast
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(3, 50, 7, generator=g, dtype=dtype) * 3).transpose(1, 2)  # not contiguous
    grad = torch.randn(3, 7, 50, generator=g, dtype=dtype)
    assert fast._fake_quant_kernels(x) is not None, "inductor could not compile the fake quantization here"

    def run(compile_kernels: bool):
        monkeypatch.setattr(fast, "_COMPILE", compile_kernels)
        xs, scale = x.clone().requires_grad_(True), torch.tensor([0.05], dtype=dtype, requires_grad=True)
        y = fast.fake_quant(xs, scale, -4.0, 3.0)
        y.backward(grad)
        return y.detach(), xs.grad, scale.grad

    compiled, eager = run(True), run(False)
    assert torch.equal(compiled[0], eager[0]) and torch.equal(compiled[1], eager[1])
    assert compiled[2].shape == eager[2].shape
    assert float(compiled[2]) == pytest.approx(float(eager[2]), rel=1e-9 if dtype == torch.float64 else 1e-4)


@pytest.mark.parametrize("shape, axis", [((2, 24, 190), 1), ((3, 300, 12), -1), ((1, 6, 5, 9), 1)])
def test_compiled_integer_norm_equals_the_integer_reference(shape, axis):
    from limuse_edge.model import fast
    from limuse_edge.model.integer_norm import _compiled_rows, integer_norm_value
    g = torch.Generator().manual_seed(2)
    x = torch.randint(-128, 128, shape, generator=g).float() * 0.0625
    gamma = torch.randint(-127, 128, (shape[axis],), generator=g)
    beta = torch.randint(-5000, 5000, (shape[axis],), generator=g)
    assert _compiled_rows(x) is not None
    reference = integer_norm_value(x, gamma, beta, 0.0625, -5, axis)
    with fast_kernels():
        assert torch.equal(integer_norm_value(x, gamma, beta, 0.0625, -5, axis), reference)
    assert fast.active() is False


@pytest.mark.parametrize("dilation", [1, 4])
def test_compiled_depthwise_conv_equals_the_plain_functions(dilation):
    from limuse_edge.model import fast
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 40, 6, generator=g, dtype=torch.float64)
    weight, bias = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    grad = torch.randn(3, 40, 6, generator=g, dtype=torch.float64)
    kernels = fast._depthwise_kernels(x)
    assert kernels[0] is not fast._depthwise_values, "inductor could not compile the depthwise conv here"
    conv = torch.nn.Conv1d(6, 6, 3, dilation=dilation, padding=dilation, groups=6).double()
    with torch.no_grad():
        conv.weight.copy_(weight[:, None]), conv.bias.copy_(bias)
    reference = conv(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(kernels[0](x, weight, bias, dilation), reference, rtol=1e-12, atol=1e-12)
    for got, plain in zip(kernels[1](grad, x, weight, dilation), fast._depthwise_grads(grad, x, weight, dilation)):
        torch.testing.assert_close(got, plain, rtol=1e-12, atol=1e-12)
