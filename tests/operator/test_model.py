"""The network is neuraloperator's FNO: the faster 1-D contraction gives the same numbers as
neuraloperator's own SpectralConv, and the polyphase time fold is an exact re-indexing."""

from __future__ import annotations

import torch
from neuralop.layers.spectral_convolution import SpectralConv

from noble.operator.model import FastSpectralConv


def test_fast_spectral_conv_equals_neuraloperator() -> None:
    torch.manual_seed(0)
    ref = SpectralConv(8, 6, n_modes=(24,))
    fast = FastSpectralConv(8, 6, n_modes=(24,))
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(3, 8, 200, requires_grad=True)
    torch.testing.assert_close(fast(x), ref(x), rtol=1e-5, atol=1e-5)
    g_ref = torch.autograd.grad(ref(x).square().sum(), x)[0]
    g_fast = torch.autograd.grad(fast(x).square().sum(), x)[0]
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-4)


def test_cached_weight_layout_follows_the_weights() -> None:
    """Without autograd the contraction reuses its weight layout; an optimiser step or a new state dict
    must still be seen by the next inference call."""
    torch.manual_seed(1)
    ref = SpectralConv(8, 6, n_modes=(24,))
    fast = FastSpectralConv(8, 6, n_modes=(24,))
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(2, 8, 200)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), ref(x), rtol=1e-5, atol=1e-5)
    opt = torch.optim.SGD(fast.parameters(), lr=0.5)
    fast(x).square().sum().backward()
    opt.step()
    with torch.no_grad():
        moved = fast(x)
    ref.load_state_dict(fast.state_dict())
    torch.testing.assert_close(moved, ref(x).detach(), rtol=1e-5, atol=1e-5)
    fresh = SpectralConv(8, 6, n_modes=(24,))
    fast.load_state_dict(fresh.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), fresh(x), rtol=1e-5, atol=1e-5)


def test_time_fold_is_polyphase() -> None:
    """With time_fold k the FNO sees the stimulus as k polyphase channels on a k-times coarser grid and
    its k output channels are interleaved back onto the fine grid."""
    from noble.operator.config import EmbeddingConfig, FNOConfig, StimulusProtocol, SurrogateConfig
    from noble.operator.model import NobleOperator

    k, T = 4, 400
    cfg = SurrogateConfig(
        name="t", family="lif", feature_names=["a"], feature_units=["1"], feature_ranges={"a": (0.0, 1.0)},
        embedding=EmbeddingConfig(feature_names=["a"], n_frequencies=2, lows=[0.0], highs=[1.0]),
        fno=FNOConfig(n_modes=16, hidden_channels=8, n_layers=1, time_fold=k), stim_scale_pA=1.0,
        v_mean_mV=0.0, v_std_mV=1.0, dt_ms=0.1, n_time=T, stimulus=StimulusProtocol(), population=[[0.5]])
    net = NobleOperator(cfg).eval()
    seen = {}
    net.fno.register_forward_hook(lambda mod, inp, out: seen.update(x=inp[0], y=out))
    stim = torch.arange(2 * T, dtype=torch.float32).reshape(2, T)
    out = net(torch.tensor([[0.2], [0.7]]), stim)
    x, y = seen["x"], seen["y"]
    assert x.shape == (2, k + 2 * 2, T // k) and y.shape == (2, k, T // k)
    for r in range(k):
        assert torch.equal(x[:, r, :], stim[:, r::k])  # channel r = fine samples r, r+k, ...
        assert torch.equal(out[:, r::k], y[:, r, :])  # output channel r goes back to those samples
    # output_blur: the same network's interleaved output through the fixed [1, 2, 1]/4 filter (edges repeated)
    cfg_b = cfg.model_copy(update={"fno": cfg.fno.model_copy(update={"output_blur": True})})
    net_b = NobleOperator(cfg_b).eval()
    net_b.load_state_dict({k: v for k, v in net.state_dict().items() if k != "_metadata"})  # no extra weights
    blurred = net_b(torch.tensor([[0.2], [0.7]]), stim)
    pad = torch.cat([out[:, :1], out, out[:, -1:]], dim=1)
    torch.testing.assert_close(blurred, 0.25 * pad[:, :-2] + 0.5 * pad[:, 1:-1] + 0.25 * pad[:, 2:])
    zigzag = torch.tensor([[1.0, -1.0] * 8])  # the interleaving artefact at the fine grid's Nyquist rate
    zpad = torch.cat([zigzag[:, :1], zigzag, zigzag[:, -1:]], dim=1)
    assert (0.25 * zpad[:, :-2] + 0.5 * zpad[:, 1:-1] + 0.25 * zpad[:, 2:])[:, 1:-1].abs().max() == 0
