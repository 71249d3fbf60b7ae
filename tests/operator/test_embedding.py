"""The embedding is what MODELS.md says: features normalised to [0, 1] over the training range, lifted by
[sin(2^k pi x), cos(2^k pi x)] for k < K, broadcast along time, stacked after the stimulus channel."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from noble.operator.config import EmbeddingConfig
from noble.operator.embedding import embed_inputs, fi_phase, fit_normalisers, frequency_embedding, normalise


def test_frequency_embedding_values_at_known_x() -> None:
    K = 3
    x = torch.tensor([[0.0], [0.5], [0.25], [1.0]], dtype=torch.float64)
    emb = frequency_embedding(x, K).numpy()
    assert emb.shape == (4, 2 * K)
    s2 = math.sqrt(2) / 2
    expected = np.array([
        [0, 0, 0, 1, 1, 1],  # x = 0: sin 0, cos 1
        [1, 0, 0, 0, -1, 1],  # x = 1/2: sin(pi/2, pi, 2pi), cos(pi/2, pi, 2pi)
        [s2, 1, 0, s2, 0, -1],  # x = 1/4: sin(pi/4, pi/2, pi), cos(pi/4, pi/2, pi)
        [0, 0, 0, -1, 1, 1],  # x = 1: sin(pi, 2pi, 4pi), cos(pi, 2pi, 4pi)
    ])
    np.testing.assert_allclose(emb, expected, atol=1e-12)


def test_embedding_is_feature_major_and_injective_over_unit_interval() -> None:
    x = torch.tensor([[0.1, 0.7]], dtype=torch.float64)
    emb = frequency_embedding(x, 2).numpy()[0]
    # feature 0's [sin k=0, sin k=1, cos k=0, cos k=1], then feature 1's
    np.testing.assert_allclose(emb[:4], [math.sin(0.1 * math.pi), math.sin(0.2 * math.pi),
                                         math.cos(0.1 * math.pi), math.cos(0.2 * math.pi)], atol=1e-12)
    np.testing.assert_allclose(emb[4:], [math.sin(0.7 * math.pi), math.sin(1.4 * math.pi),
                                         math.cos(0.7 * math.pi), math.cos(1.4 * math.pi)], atol=1e-12)
    # cos(pi x) is strictly decreasing on [0, 1]: distinct features never collide
    grid = torch.linspace(0, 1, 101, dtype=torch.float64)[:, None]
    c0 = frequency_embedding(grid, 1).numpy()[:, 1]
    assert np.all(np.diff(c0) < 0)


def test_embed_inputs_shapes_broadcast_and_normalisation() -> None:
    pop = np.array([[50.0, 0.1], [150.0, 0.3], [100.0, 0.2]])
    lows, highs = fit_normalisers(pop)
    assert lows == [50.0, 0.1] and highs == [150.0, 0.3]
    cfg = EmbeddingConfig(feature_names=["I_thr_pA", "s_thr_Hz_per_pA"], n_frequencies=4, lows=lows, highs=highs)
    B, T = 3, 17
    feats = torch.tensor(pop, dtype=torch.float32)
    stim = torch.linspace(-1, 1, T).repeat(B, 1)
    x = embed_inputs(feats, stim, cfg)
    assert x.shape == (B, 1 + 2 * 4 * 2, T) == (B, 1 + cfg.n_channels, T)
    torch.testing.assert_close(x[:, 0, :], stim)  # stimulus channel first, untouched
    # every embedding channel is constant in time
    assert torch.all(x[:, 1:, :] == x[:, 1:, :1])
    # lows map to x = 0 (sin 0, cos 1), highs to x = 1 (cos(pi) = -1 at k = 0)
    u = normalise(feats.double(), torch.tensor(lows).double(), torch.tensor(highs).double())
    torch.testing.assert_close(u, torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]], dtype=torch.float64))
    assert torch.allclose(x[0, 1 + 4, 0], torch.tensor(1.0))  # feature 0, cos k=0 at x=0
    assert torch.allclose(x[1, 1 + 4, 0], torch.tensor(-1.0), atol=1e-6)  # feature 0, cos k=0 at x=1


def test_embedding_config_refuses_bad_normalisers() -> None:
    with pytest.raises(ValueError, match="high"):
        EmbeddingConfig(feature_names=["a"], lows=[1.0], highs=[1.0])
    with pytest.raises(ValueError, match="one value per feature"):
        EmbeddingConfig(feature_names=["a", "b"], lows=[0.0], highs=[1.0])
    with pytest.raises(ValueError, match="normalisers"):
        embed_inputs(torch.zeros(1, 1), torch.zeros(1, 4), EmbeddingConfig(feature_names=["a"]))


def test_fi_phase_turns_once_per_spike_the_linear_fi_line_predicts() -> None:
    """phi = integral of fi_slope (I - I_thr)+: a 1 s step at 300 pA for I_thr 100 pA, slope 0.2025 Hz/pA is
    40.5 Hz, so sin/cos(2 pi phi) turn 40 full times during the step and not at all before it or below rheobase."""
    dt_ms, T = 0.2, 6000
    t = torch.arange(T) * dt_ms
    step = ((t >= 100.0) & (t < 1100.0)).float()
    drive = torch.relu(torch.stack([300.0 * step, 80.0 * step]) - 100.0)  # (2, T): above / below rheobase
    ph = fi_phase(0.2025 * drive, dt_ms)
    assert ph.shape == (2, 2, T)
    angle = torch.atan2(ph[:, 0], ph[:, 1])
    turns = ((angle[:, 1:] >= 0) & (angle[:, :-1] < 0)).sum(dim=1)
    assert turns.tolist() == [40, 0]
    assert torch.allclose(ph[:, :, :500], torch.tensor([0.0, 1.0])[None, :, None].expand(2, 2, 500))


def test_fi_phase_needs_its_features() -> None:
    with pytest.raises(ValueError, match="fi_phase"):
        EmbeddingConfig(feature_names=["I_thr_pA", "s_thr_Hz_per_pA"], fi_phase=True)
    with pytest.raises(ValueError, match="fi_quad_Hz_per_pA2"):
        EmbeddingConfig(feature_names=["I_thr_pA", "fi_slope_Hz_per_pA"], fi_phase=True, fi_rate="quadratic")
