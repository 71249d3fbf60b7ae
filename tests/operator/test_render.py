"""Spike rendering (noble/operator/render.py): the split of a solver trace into subthreshold voltage, phase and
AP templates loses nothing, the phase gives the spike times back, and placing an AP is differentiable in its
time (the fit's surrogate stage descends through it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from noble.datagen.models.hh import HH
from noble.datagen.simulate import simulate, steps_matrix
from noble.operator.config import APRenderConfig
from noble.operator.render import (APDecoder, Spikes, ap_windows, excise_aps, paste_aps, peak_times_ms,
                                   phase_spikes, phase_target, quiet_after_offset, quiet_at,
                                   upsample_linear)

RC = APRenderConfig()
TOTAL_MS, DT, STIM_DT = 450.0, 0.025, 0.1  # the shapes of test_hh_rest.py: the compiled code is shared


@pytest.fixture(scope="module")
def fs_trace() -> np.ndarray:
    """The fast-spiking preset at a 150 pA step from 50 ms, noise-free, recorded at 0.025 ms."""
    row = np.array([[HH.preset_values("fast_spiking")[k] for k in HH.param_names()]])
    stim = steps_matrix(np.array([150.0]), 50.0, TOTAL_MS, TOTAL_MS, STIM_DT)
    res = simulate(HH, row, stim, stim_dt_ms=STIM_DT, duration_ms=TOTAL_MS, dt_ms=DT, record_dt_ms=DT)
    return np.asarray(res.v_mV[0], dtype=np.float64)


def test_peak_times_are_sub_sample_accurate() -> None:
    dt = 0.1
    t = np.arange(0, 50, dt)
    true = np.array([10.037, 23.461, 40.0])
    v = -65 + sum(105 * np.exp(-0.5 * ((t - p) / 0.3) ** 2) for p in true)
    np.testing.assert_allclose(peak_times_ms(v, dt), true, atol=0.01)  # 0.1 ms samples, 0.01 ms peaks
    assert len(peak_times_ms(np.full(100, -30.0), dt)) == 0  # a plateau below threshold is no spike


def test_split_and_render_reproduce_a_solver_trace(fs_trace: np.ndarray) -> None:
    """Subthreshold voltage on the 0.2 ms operator grid + the APs' windows at the true peaks, rendered on a
    0.05 ms grid, give the Brian2 trace back: the representation itself costs < 1 % rel L2 (the cross-fades at
    the window edges) and nothing at the AP peaks."""
    v = fs_trace
    peaks = peak_times_ms(v, DT)
    assert len(peaks) >= 5  # the preset fires repetitively at 150 pA (7 APs in 400 ms)
    sub = excise_aps(v, DT, peaks, RC.pre_ms, RC.post_ms)
    assert sub.max() < -20.0  # no AP left in the subthreshold part
    aps = ap_windows(v, DT, peaks, RC)
    base = upsample_linear(torch.as_tensor(sub[::8][None]), 4)  # 0.2 ms -> 0.05 ms
    spikes = Spikes(torch.zeros(len(peaks), dtype=torch.long), torch.as_tensor(peaks),
                    torch.arange(len(peaks)), torch.zeros(len(peaks)))
    out = paste_aps(base, spikes, torch.as_tensor(aps), 0.05, RC)[0].numpy()
    true = v[::2]
    assert np.linalg.norm(out - true) / np.linalg.norm(true) < 0.01
    k = np.round(peaks / 0.05).astype(int)
    assert np.max(np.abs(out[k] - true[k])) < 0.5


def test_phase_target_gives_the_spike_times_back(fs_trace: np.ndarray) -> None:
    peaks = peak_times_ms(fs_trace, DT)
    t_op = np.arange(int(TOTAL_MS / 0.2)) * 0.2
    phi = phase_target(peaks, t_op, changes_ms=np.array([50.0]), end_ms=TOTAL_MS, spike_phase=0.5)
    assert np.all(np.diff(phi) >= -1e-12) and phi[t_op < 50].max() == 0.0
    got = phase_spikes(torch.as_tensor(phi[None]), 0.2, 0.5, RC.isi_cap_ms)
    assert len(got.time_ms) == len(peaks)  # no phantom spike after the last one
    np.testing.assert_allclose(got.time_ms.numpy(), peaks, atol=0.1)  # half the 0.2 ms operator step
    assert got.isi_ms[0] == pytest.approx(RC.isi_cap_ms)
    np.testing.assert_allclose(got.isi_ms[1:].numpy(), np.diff(peaks), atol=0.2)
    assert len(phase_spikes(torch.zeros(1, 100), 0.2, 0.5, 300.0).time_ms) == 0
    # a rebound spike after a hyperpolarising step: the phase waits for the step's offset, not its onset
    rebound = phase_target(np.array([420.0]), t_op, changes_ms=np.array([50.0, 400.0]), end_ms=400.0,
                           spike_phase=0.5)
    assert rebound[t_op < 400.0].max() == 0.0 and rebound[t_op >= 420.0].min() == pytest.approx(0.5)


def test_placing_an_ap_is_differentiable_in_its_time() -> None:
    torch.manual_seed(0)
    dec = APDecoder(3, RC)
    r = dec(torch.randn(1, 3 + 3)).detach()
    w = torch.randn(1, 400, dtype=torch.float64)

    def score(t: torch.Tensor) -> torch.Tensor:
        sp = Spikes(torch.zeros(1, dtype=torch.long), t, torch.zeros(1, dtype=torch.long), torch.zeros(1))
        base = torch.linspace(-60.0, -50.0, 400, dtype=torch.float64)[None]
        return (paste_aps(base, sp, r.double() * 50, 0.05, RC) * w).sum()

    t = torch.tensor([10.013], dtype=torch.float64, requires_grad=True)
    score(t).backward()
    h = 1e-4
    fd = (score(torch.tensor([10.013 + h], dtype=torch.float64)) - score(torch.tensor([10.013 - h],
                                                                                      dtype=torch.float64))) / (2 * h)
    assert t.grad is not None and float(t.grad) == pytest.approx(float(fd), rel=1e-3)


def test_training_targets_count_every_ap_and_the_phase_agrees(fs_trace: np.ndarray) -> None:
    """build_targets on a Brian2 trace: one AP window per peak, the subthreshold target without APs, and the
    phase target's spike count (what the renderer will draw) equal to the solver's count."""
    from noble.operator.data import TraceSet
    from noble.operator.train_render import build_targets, count_from_phase

    quiet = np.full_like(fs_trace, fs_trace[:100].mean())
    traces = TraceSet(v_mV=np.stack([fs_trace, quiet]).astype(np.float32),
                      stim_pA=np.zeros((2, len(fs_trace)), dtype=np.float32) + np.where(
                          np.arange(len(fs_trace)) * DT >= 50.0, 150.0, 0.0).astype(np.float32) * [[1], [0]],
                      features=np.zeros((2, 1)),
                      feature_names=["I_thr_pA"], feature_units=["pA"], model_id=np.array([0, 1]),
                      amp_pA=np.array([150.0, 0.0]), dt_ms=DT, dataset_dt_ms=DT, family="hh", preset=None,
                      protocol={"start_ms": 50.0, "duration_ms": 400.0, "amplitudes_pA": [150.0, 0.0]}, manifest={})
    tg = build_targets(traces, RC, spike_phase=0.5)
    n = len(peak_times_ms(fs_trace, DT))
    assert list(tg.n_spikes) == [n, 0] and len(tg.ap_row) == n and tg.ap_v_mV.shape == (n, RC.n_template)
    assert list(count_from_phase(tg.phi, 0.5)) == [n, 0]
    assert tg.sub_mV.shape[1] == len(fs_trace) // 8 and tg.sub_mV.max() < -20.0
    assert np.all(tg.ap_v_mV.max(axis=1) > 20.0)  # every window holds its overshooting AP
    assert tg.ap_isi_ms[0] == RC.isi_cap_ms and np.all(tg.ap_isi_ms[1:] > 5.0)
    # the validation timing that picks the epoch: ~0 for the target phase, the shift for a phase 1 ms late
    from noble.operator.train_render import first_spike_time_error_ms
    rows = np.array([0, 1])
    assert first_spike_time_error_ms(tg.phi, rows, tg, RC.coarse_dt_ms, 0.5) < 0.1
    late = np.concatenate([np.zeros((2, 5), dtype=tg.phi.dtype), tg.phi[:, :-5]], axis=1)  # 5 x 0.2 ms
    assert first_spike_time_error_ms(late, rows, tg, RC.coarse_dt_ms, 0.5) == pytest.approx(1.0, abs=0.1)
    assert np.isnan(first_spike_time_error_ms(tg.phi[1:], rows[1:], tg, RC.coarse_dt_ms, 0.5))  # no spikes


def test_no_ap_is_drawn_once_a_depolarising_step_has_ended_below_rheobase() -> None:
    """`quiet_after_offset`: from guard_ms after the drive falls below I_thr, while it stays between the holding level
    and I_thr; never during a step, never after a hyperpolarisation (rebound), never for a neuron at or above its
    rheobase at the holding level."""
    dt = 0.5
    t = np.arange(0, 400, dt)
    stim = np.zeros((4, len(t)), dtype=np.float32)
    stim[:, (t >= 50) & (t < 150)] = 100.0  # a depolarising step, ends at 150 ms
    stim[2, (t >= 250) & (t < 300)] = -50.0  # then a hyperpolarising one: its offset may rebound
    i_thr = torch.tensor([60.0, 60.0, 60.0, 0.0])  # the last neuron fires at the holding level
    quiet = quiet_after_offset(torch.as_tensor(stim), i_thr, dt, torch.tensor([5.0, 20.0, 5.0, 5.0])).numpy()
    assert not quiet[:, t < 155].any()  # before the offset and within 5 ms of it
    np.testing.assert_array_equal(quiet[0], t >= 155)
    np.testing.assert_array_equal(quiet[1], t >= 170)  # a longer guard (tau_m)
    np.testing.assert_array_equal(quiet[2], (t >= 155) & (t < 250))  # the hyperpolarisation ends it
    assert not quiet[3].any()


def test_quiet_at_the_samples_equals_the_dense_rule() -> None:
    """`quiet_at` (what inference reads at each drawn spike) is `quiet_after_offset` at those samples: on steps,
    two-step and hyperpolarising protocols and piecewise-random drives, at every sample of every trace."""
    rng = np.random.default_rng(0)
    dt, T = 0.5, 800
    t = np.arange(T) * dt
    stims = []
    for b in range(24):
        x = np.zeros(T, dtype=np.float32)
        for _ in range(rng.integers(1, 5)):  # a few steps of random level and length, some overlapping
            a, w = rng.uniform(0, 350), rng.uniform(5, 150)
            x[(t >= a) & (t < a + w)] = rng.choice([-80.0, -20.0, 30.0, 70.0, 120.0])
        x += rng.choice([0.0, 10.0])  # a holding current on some
        stims.append(x)
    stim = torch.as_tensor(np.stack(stims))
    i_thr = torch.as_tensor(rng.uniform(20, 100, size=24), dtype=torch.float32)
    guard = torch.as_tensor(rng.uniform(1, 30, size=24), dtype=torch.float32)
    dense = quiet_after_offset(stim, i_thr, dt, guard)
    assert dense.any() and not dense.all()
    trace = torch.arange(24).repeat_interleave(T)
    at = torch.arange(T).repeat(24)
    assert torch.equal(quiet_at(stim, i_thr, dt, guard, trace, at), dense[trace, at])
    pick = torch.as_tensor(rng.choice(24 * T, size=300, replace=False))  # any subset, in any order
    assert torch.equal(quiet_at(stim, i_thr, dt, guard, trace[pick], at[pick]), dense[trace[pick], at[pick]])


def test_change_points_are_every_sample_that_differs_from_the_one_before() -> None:
    """`change_points` (blocks without a change skipped) finds what comparing every sample finds, in the same
    order: changes at block edges, at the last sample, after the last whole block, everywhere (noise), nowhere."""
    from noble.operator.render import CHANGE_BLOCK, change_points

    k = CHANGE_BLOCK
    x = torch.zeros(6, 40 * k + 7)
    x[:, 3 * k:30 * k] = 200.0  # a step
    x[1, k] = 1.0  # the first sample of a block
    x[1, k + 1] = 2.0
    x[2, -1] = 5.0  # the very last sample
    x[3, 40 * k + 3:] = 9.0  # after the last whole block
    x[4] = torch.randn(x.shape[1])  # every sample
    x[5] = 0.0  # none
    for case in (x, torch.randint(0, 3, (5, 1001)).float(), torch.randn(3, 2 * k)):
        b, t = torch.nonzero(case[:, 1:] != case[:, :-1], as_tuple=True)
        got_b, got_t = change_points(case)
        assert torch.equal(got_b, b) and torch.equal(got_t, t + 1)


def test_warp_to_prior_moves_each_spike_to_the_prior_and_keeps_the_rest_in_place() -> None:
    """render.spike_times 'prior': the subthreshold target's spike-locked shapes (here an AHP dip 3 ms after each
    peak, inside the 0.8 + 3.5 ms AP window that moves rigidly) land at the prior's spike times; the pre-step rest
    and the post-step tail are untouched; a spike the prior does not draw is masked out of the loss where its
    bridge lands."""
    from noble.operator.train_render import warp_to_prior

    dt = 0.2
    t = np.arange(1000) * dt
    peaks = np.array([50.0, 90.0, 130.0])
    sub = -60.0 - sum(10.0 * np.exp(-(((t - (p + 3.0)) / 1.5) ** 2)) for p in peaks)
    sub[t < 20.0] = -65.0
    prior = np.array([52.0, 86.0, 137.0])
    changes = np.array([20.0, 180.0])
    warped, mask = warp_to_prior(sub, dt, peaks, prior, changes, pre_ms=0.8, post_ms=3.5)
    assert mask.all()
    for p in prior:  # each dip at prior + 3 ms, to the sample
        near = (t > p - 2.0) & (t < p + 8.0)
        assert abs(t[near][np.argmin(warped[near])] - (p + 3.0)) < 0.5 * dt + 1e-9
    np.testing.assert_array_equal(warped[t <= 20.0], sub[t <= 20.0])
    np.testing.assert_allclose(warped[t >= 180.0], sub[t >= 180.0])
    # the prior draws two spikes: the third keeps its dip (no AP will be drawn there) and is masked
    warped2, mask2 = warp_to_prior(sub, dt, peaks, prior[:2], changes, pre_ms=0.8, post_ms=3.5)
    assert not mask2.all() and mask2[t < 120.0].all()
    dip = t[np.argmin(np.where(t > 100.0, warped2, 0.0))]
    assert not mask2[np.argmin(np.abs(t - dip))]
    # a prior spike on the other side of a stimulus change is not matched across it
    _w3, mask3 = warp_to_prior(sub, dt, peaks, np.array([52.0, 86.0, 185.0]), changes, pre_ms=0.8, post_ms=3.5)
    assert not mask3.all()
