"""The network is neuraloperator's FNO: the faster 1-D contraction gives the same numbers as
neuraloperator's own SpectralConv, the lifting of constant channels as a per-trace bias gives the same numbers
as the FNO's own forward pass, and the polyphase time fold is an exact re-indexing."""

from __future__ import annotations

import torch
from neuralop.layers.spectral_convolution import SpectralConv

from noble.operator.model import FastSpectralConv, fno_with_constant_channels


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
    import noble.operator.model as model_module

    net = NobleOperator(cfg).eval()
    seen = {}
    real = model_module.fno_with_constant_channels

    def spy(fno, before, constant, after):  # the FNO's input channels, as fno_with_constant_channels gets them
        y = real(fno, before, constant, after)
        seen.update(x=before, emb=constant, y=y)
        return y

    stim = torch.arange(2 * T, dtype=torch.float32).reshape(2, T)
    model_module.fno_with_constant_channels = spy
    try:
        out = net(torch.tensor([[0.2], [0.7]]), stim)
    finally:
        model_module.fno_with_constant_channels = real
    x, y = seen["x"], seen["y"]
    assert x.shape == (2, k, T // k) and seen["emb"].shape == (2, 2 * 2) and y.shape == (2, k, T // k)
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


def test_constant_channels_lifted_as_a_bias_equal_the_full_forward_pass() -> None:
    """fno_with_constant_channels(fno, a, c, b) == fno(cat([a, c broadcast in time, b])), values and
    gradients, with the grid positional embedding and a two-layer lifting (the shipped surrogates' FNO)."""
    from neuralop.models import FNO

    torch.manual_seed(2)
    fno = FNO(n_modes=(16,), in_channels=3 + 5 + 4, out_channels=2, hidden_channels=8, n_layers=2,
              lifting_channel_ratio=2, projection_channel_ratio=2, positional_embedding="grid")
    a = torch.randn(3, 3, 50, requires_grad=True)
    c = torch.randn(3, 5, requires_grad=True)
    b = torch.randn(3, 4, 50)
    full = fno(torch.cat([a, c[:, :, None].expand(-1, -1, 50), b], dim=1))
    fast = fno_with_constant_channels(fno, a, c, b)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)
    g_full = torch.autograd.grad(full.square().sum(), (a, c))
    g_fast = torch.autograd.grad(fast.square().sum(), (a, c))
    for gf, gr in zip(g_fast, g_full):
        torch.testing.assert_close(gf, gr, rtol=1e-4, atol=1e-4)
    no_after = FNO(n_modes=(16,), in_channels=3 + 5, out_channels=1, hidden_channels=8, n_layers=1,
                   positional_embedding=None)
    torch.testing.assert_close(fno_with_constant_channels(no_after, a, c, None),
                               no_after(torch.cat([a, c[:, :, None].expand(-1, -1, 50)], dim=1)),
                               rtol=1e-5, atol=1e-5)


def test_inference_in_mV_equals_the_normalised_forward_pass() -> None:
    """`Surrogate.predict` reads `voltage_mV`, which skips forward's normalise-then-undo over the output grid: the
    same voltages to float rounding, APs included (the shipped default surrogate at a spiking step)."""
    import numpy as np

    from noble.operator import default_surrogate_path, load_surrogate

    sur = load_surrogate(default_surrogate_path())
    feats = np.array(sur.config.population[:3], dtype=np.float32)
    stim = np.stack([sur.step_stimulus(a) for a in (-50.0, 150.0, 300.0)])
    f, s = torch.as_tensor(feats), torch.as_tensor(stim)
    with torch.inference_mode():
        ref = sur.net.to_mV(sur.net(f, s))
        fast = sur.net.voltage_mV(f, s)
    assert float(ref.max()) > 0.0  # APs drawn
    torch.testing.assert_close(fast, ref, rtol=0.0, atol=1e-3)
    np.testing.assert_array_equal(sur.predict(feats, stim), fast.numpy())


def test_a_neurons_trace_does_not_depend_on_its_batch_neighbours() -> None:
    """The service batches concurrent requests into one forward pass: a neuron's voltages alone and among 47 others
    (and in one chunk of 48) are the same to float rounding, spikes included (the learned prior's per-run terms are
    padded to whole SIMD blocks, phase_net.RUN_BLOCK)."""
    import numpy as np

    from noble.operator import default_surrogate_path, load_surrogate
    from noble.operator.sample import draw_features

    sur = load_surrogate(default_surrogate_path())
    feats = draw_features(sur, 48, np.random.default_rng(0))
    stim = np.repeat(sur.step_stimulus(250.0)[None], 48, axis=0)
    alone = sur.predict(feats[:3], stim[:3])
    assert float(alone.max()) > 0.0  # they fire
    np.testing.assert_allclose(sur.predict(feats, stim)[:3], alone, atol=1e-3)
    sur.batch_size = 48
    np.testing.assert_allclose(sur.predict(feats, stim)[:3], alone, atol=1e-3)
