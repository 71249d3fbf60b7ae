"""Sampling new neurons: seeded draws are reproducible, stay in the population's range, explicit features
are range-checked (ValueError naming the feature), and the statistics match the traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import noble.operator as op
from noble.datagen.features import trace_features
from noble.operator import load_surrogate, sample


@pytest.fixture(scope="module")
def sur(tiny_checkpoint: Path):
    return load_surrogate(tiny_checkpoint)


def test_sampling_is_reproducible_and_in_range(sur) -> None:
    a = sample(sur, 320.0, n=64, seed=7)
    b = sample(sur, 320.0, n=64, seed=7)
    c = sample(sur, 320.0, n=64, seed=8)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.v_mV, b.v_mV)
    assert not np.array_equal(a.features, c.features)
    big = op.sample(sur, 320.0, n=2000, seed=1).features  # the package attribute is callable too
    for j, name in enumerate(sur.config.feature_names):
        lo, hi = sur.config.feature_ranges[name]
        assert np.all(big[:, j] >= lo) and np.all(big[:, j] <= hi), name
        pop = np.array(sur.config.population)[:, j]
        # draws follow the population: their mean is within the population's spread of its mean
        assert abs(big[:, j].mean() - pop.mean()) < 0.5 * pop.std() + 1e-12, name


def test_sample_result_shapes_bands_and_statistics(sur) -> None:
    res = sample(sur, 400.0, n=16, seed=0)
    T = sur.config.n_time
    assert res.v_mV.shape == (16, T) and res.t_ms.shape == (T,) and res.features.shape == (16, 2)
    assert set(res.bands) == {"mean", "q05", "q50", "q95"}
    assert all(b.shape == (T,) for b in res.bands.values())
    assert np.all(res.bands["q05"] <= res.bands["q50"] + 1e-5) and np.all(res.bands["q50"] <= res.bands["q95"] + 1e-5)
    np.testing.assert_allclose(res.bands["mean"], res.v_mV.mean(axis=0), rtol=1e-5, atol=1e-4)
    p = sur.config.stimulus
    tf = trace_features(res.v_mV, sur.config.dt_ms, p.start_ms, p.end_ms, 400.0)
    np.testing.assert_array_equal(res.spike_counts, tf["spike_count"])
    silent = res.spike_counts == 0
    assert np.all(np.isnan(res.first_spike_latency_ms[silent]))
    assert np.all(np.isfinite(res.first_spike_latency_ms[~silent]))
    # the stimulus is the trained step on the surrogate grid
    stim = sur.step_stimulus(400.0)
    assert stim.shape == (T,) and stim.max() == 400.0 and stim[0] == 0.0
    on = np.flatnonzero(stim)
    assert on[0] * sur.config.dt_ms == pytest.approx(p.start_ms)
    assert (on[-1] + 1) * sur.config.dt_ms == pytest.approx(p.end_ms)


def test_explicit_features_in_range_and_out_of_range_refused(sur) -> None:
    lo, hi = sur.config.feature_ranges["I_thr_pA"]
    s_lo, s_hi = sur.config.feature_ranges["s_thr_Hz_per_pA"]
    mid = [(lo + hi) / 2, (s_lo + s_hi) / 2]
    res = sample(sur, 260.0, n=3, seed=0, features=mid)
    assert np.all(res.features == np.array(mid))
    assert np.allclose(res.v_mV[0], res.v_mV[1])  # same neuron, same stimulus -> same trace
    with pytest.raises(ValueError, match=r"I_thr_pA.*outside the trained range") as exc:
        sample(sur, 260.0, n=3, seed=0, features=[hi + 50.0, mid[1]])
    assert f"{hi:g}" in str(exc.value)
    with pytest.raises(ValueError, match="s_thr_Hz_per_pA"):
        sample(sur, 260.0, n=3, seed=0, features={"s_thr_Hz_per_pA": s_lo - 1.0})
    with pytest.raises(ValueError, match="s_thr_Hz_per_pA"):
        sur.predict(np.array([[mid[0], s_hi * 2]]), sur.step_stimulus(260.0)[None])
    with pytest.raises(ValueError, match="unknown feature"):
        sample(sur, 260.0, n=3, seed=0, features={"g_Na": 1.0})


def test_partial_features_fix_some_and_draw_the_rest(sur) -> None:
    lo, hi = sur.config.feature_ranges["I_thr_pA"]
    val = lo + 0.3 * (hi - lo)
    res = sample(sur, 320.0, n=200, seed=3, features={"I_thr_pA": val})
    assert np.all(res.features[:, 0] == val)
    s_lo, s_hi = sur.config.feature_ranges["s_thr_Hz_per_pA"]
    assert np.all((res.features[:, 1] >= s_lo) & (res.features[:, 1] <= s_hi))
    assert res.features[:, 1].std() > 0


def test_waveform_stimulus(sur) -> None:
    T = sur.config.n_time
    wave = np.zeros(T)
    wave[T // 4: T // 2] = 300.0
    res = sample(sur, wave, n=4, seed=0)
    assert res.window_ms == pytest.approx(((T // 4) * sur.config.dt_ms, (T // 2) * sur.config.dt_ms))
    with pytest.raises(ValueError, match="samples"):
        sample(sur, wave[:-1], n=4, seed=0)
    with pytest.raises(ValueError, match="n must be"):
        sample(sur, 100.0, n=0, seed=0)
