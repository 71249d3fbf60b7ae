"""What the fit's objective counts as spikes (noble/fit/spikes.py), the 'stops early' term it scores, and the search
box fit.json reports.

* A hand-built trace: a real AP train, then a depolarisation-block plateau near -25 mV that rings by 6 mV. eFEL at
  -20 mV counts every ring; the objective's count (peak above -10 mV, prominence >= 20 mV) counts the APs only.
* The vectorised finder finds exactly the APs `find_aps` (the physiology checks) finds, trace by trace.
* Against a recording made by the hh fast-spiking truth, models in depolarisation block (g_Kd x 0.5 and x 0.3)
  score far worse than the truth on the last-spike term, on the sweeps where they block.
"""

from __future__ import annotations

import numpy as np
import pytest

from noble.datagen.features import trace_features
from noble.datagen.models import get as get_family
from noble.fit.api import free_parameters
from noble.fit.hhmodel import DEFAULT_FREE, FIT_BOUNDS, IDX, ParamSpace, params_dict, params_row, pin_rest
from noble.fit.objective import FitProblem
from noble.fit.spikes import ap_peaks, last_spike_sd, spike_train_features
from noble.operator.ap_metrics import find_aps

from _synth import synthetic_recording  # tests/fit is on sys.path

HH = get_family("hh")
DT = 0.05
START, END = 100.0, 500.0
AP_TIMES = (110.0, 130.0, 150.0, 170.0, 190.0)


def _block_trace(ring_mV: float = 6.0, plateau_mV: float = -25.0) -> np.ndarray:
    """-65 mV rest; in the step five APs (peak +30 mV, ~0.7 ms wide, AHP to -62 mV) from a -60 mV baseline,
    then from 200 ms to the step's end a plateau at `plateau_mV` ringing at 100 Hz by +-ring_mV."""
    t = np.arange(int(600.0 / DT)) * DT
    base = np.where((t >= START) & (t < END), -60.0, -65.0)
    plateau = (t >= 200.0) & (t < END)
    ramp = np.clip((t - 195.0) / 5.0, 0.0, 1.0)  # the baseline climbs to the plateau over 5 ms
    v = np.where((t >= START) & (t < END), base + ramp * (plateau_mV - base), base)
    v = v + np.where(plateau, ring_mV * np.sin(2 * np.pi * (t - 200.0) / 10.0), 0.0)
    for tp in AP_TIMES:
        v = v + 90.0 * np.exp(-(((t - tp) / 0.4) ** 2))
        v = v - np.where(t > tp + 0.8, 7.0 * np.exp(-(t - tp - 0.8) / 4.0), 0.0)
    return v


def test_a_depolarisation_block_plateaus_ringing_is_not_counted_where_efel_counts_it() -> None:
    v = _block_trace()
    ef = trace_features(v[None], DT, START, END, 300.0)  # eFEL at its -20 mV threshold
    assert ef["spike_count"][0] >= 25  # every ring of the plateau crosses -20 mV: ~30 'spikes'
    f = spike_train_features(v[None], DT, START, END)
    assert f["spike_count"][0] == len(AP_TIMES)
    assert f["rate_Hz"][0] == pytest.approx(len(AP_TIMES) / 0.4)
    assert f["first_spike_latency_ms"][0] == pytest.approx(AP_TIMES[0] - START, abs=DT)
    # the last AP is at 90 ms of a 400 ms step: it stopped early
    assert f["last_spike_fraction"][0] == pytest.approx((AP_TIMES[-1] - START) / (END - START), abs=1e-3)
    assert f["isi_cv"][0] == pytest.approx(0.0, abs=1e-3)  # regular 20 ms intervals
    # a larger ring (peaks at -15 mV, above eFEL's threshold, 20 mV prominence) is still no AP: it stays below -10 mV
    f2 = spike_train_features(_block_trace(ring_mV=10.0)[None], DT, START, END)
    assert f2["spike_count"][0] == len(AP_TIMES)
    # and the same hand-built trace goes through the fit's per-sweep features the same way (targets.sweep_features)
    from noble.fit.targets import sweep_features
    from noble.io import Recording, Sweep

    rec = Recording([Sweep(v_mV=v, dt_ms=DT, stim_amplitude_pA=300.0, stim_start_ms=START, stim_end_ms=END, index=0)],
                    "hand", "memory")
    sf = sweep_features(rec)
    assert sf["spike_count"][0] == len(AP_TIMES) and sf["last_spike_fraction"][0] < 0.25


def test_the_vectorised_finder_finds_exactly_the_aps_of_find_aps() -> None:
    rng = np.random.default_rng(3)
    rows = [_block_trace(), _block_trace(ring_mV=10.0), _block_trace() + rng.normal(0, 1.0, len(_block_trace())),
            np.full(len(_block_trace()), -65.0), _block_trace()[::-1].copy()]
    v = np.stack(rows)
    v[2, :50] = 40.0  # a trace that starts high: a 'peak' at the first samples is not a local maximum
    row, t = ap_peaks(v, DT)
    for r in range(len(v)):
        ref = find_aps(v[r], DT)
        np.testing.assert_allclose(t[row == r], ref.peak_ms, atol=1e-9)
    assert np.all(np.diff(row) >= 0)


def test_last_spike_scale() -> None:
    # half the mean ISI of the step, floored at 0.05 and capped at 0.125
    assert last_spike_sd(10, 10.0, 0.955, 400.0) == pytest.approx(0.5 * (0.955 * 400 - 10) / 9 / 400)
    assert last_spike_sd(40, 5.0, 0.99, 400.0) == 0.05
    assert last_spike_sd(3, 100.0, 0.9, 400.0) == 0.125


@pytest.fixture(scope="module")
def block_eval() -> tuple[FitProblem, np.ndarray, np.ndarray]:
    truth = params_row(HH.preset_values("fast_spiking", {"diam_um": 60.0}))
    P = np.stack([truth, truth, truth])
    P[1, IDX["g_Kd"]] *= 0.5
    P[2, IDX["g_Kd"]] *= 0.3
    P, ok = pin_rest(P, -70.0)
    assert ok.all()
    amps = [-50.0, 100.0, 200.0, 400.0, 800.0]
    rec = synthetic_recording(params_dict(P[0]), amps, start_ms=40.0, duration_ms=200.0, tail_ms=30.0)
    prob = FitProblem.from_recording(rec)
    ev = prob.evaluate(P, 0.025, keep_traces=True)
    return prob, ev, P


def test_models_in_depolarisation_block_score_far_worse_than_the_truth(block_eval) -> None:  # noqa: ANN001
    prob, ev, _ = block_eval
    last = [i for i, (_, name) in enumerate(prob.term_labels) if name == "last_spike_fraction"]
    labels = [prob.term_labels[i][0] for i in last]
    # the term is scored where the recording fires >= 3 APs (200, 400, 800 pA), and the truth fires to the end
    assert labels == ["sweep 2 (+200 pA)", "sweep 3 (+400 pA)", "sweep 4 (+800 pA)"]
    assert np.all(prob.targets.feature_array("last_spike_fraction")[2:] > 0.85)
    z = ev.z[:, last]
    assert np.all(np.abs(z[0]) < 2.0)  # the truth (the recording's own model, noise-free)
    for c in (1, 2):  # g_Kd x 0.5 blocks from 400 pA, x 0.3 from 100 pA: their last AP comes within 10 % of the step
        assert np.all(ev.features["last_spike_fraction"][c, 3:] < 0.1)
        assert np.all(z[c, 1:] < -7.0)
        assert ev.objective[c] > 50 * ev.objective[0]
    # eFEL at -20 mV counts the plateau's ringing of the x 0.5 model at 400 pA; the objective's count does not
    s = prob.recording.sweeps[3]
    n_efel = trace_features(ev.v_mV[1, 3][None], ev.dt_ms, s.stim_start_ms, s.stim_end_ms, 400.0)["spike_count"][0]
    assert n_efel > ev.features["spike_count"][1, 3]


def test_the_last_spike_term_penalises_a_model_that_stops_early_with_the_right_count(block_eval) -> None:  # noqa: ANN001
    """A candidate with the truth's every feature but its last AP early in the 800 pA step (a burst of as many APs
    as the cell fires in the whole step): only the last-spike term sees it, and strongly."""
    prob, ev, _ = block_eval
    per = {n: a[:1].copy() for n, a in ev.features.items()}
    cell = {n: a[:1].copy() for n, a in ev.cell.items()}
    _, chi2_truth = prob.score(per, cell)
    per["last_spike_fraction"][0, 4] = 0.3
    z, chi2 = prob.score(per, cell)
    k = prob.term_labels.index(("sweep 4 (+800 pA)", "last_spike_fraction"))
    assert z[0, k] < -10
    assert chi2[0] - chi2_truth[0] > 100  # > the truth's whole chi2 many times over


def test_free_parameters_block_lists_the_search_box() -> None:
    base = HH.preset_values("regular_spiking")
    space = ParamSpace(free=DEFAULT_FREE, base=base, leak_shift_mV=(-10.0, 30.0))
    doc = free_parameters(space, pinned=True)
    by = {d["name"]: d for d in doc}
    assert list(by) == [*DEFAULT_FREE, "leak_shift_mV", "E_leak"]
    for name in DEFAULT_FREE:
        lo, hi, log = FIT_BOUNDS[name]
        d = by[name]
        assert (d["low"], d["high"], d["transform"]) == (lo, hi, "log" if log else "linear")
        assert d["unit"] == HH.param_spec(name).unit
        assert HH.param_spec(name).low <= d["low"] < d["high"] <= HH.param_spec(name).high  # inside the family's
    # the box reaches well beyond the presets (the cells fitted g_Kd ~1-4; the RS preset has 6)
    assert by["g_Kd"]["low"] <= 0.5 and by["g_Kd"]["high"] >= 30.0
    assert by["E_leak"]["transform"] == "solved" and by["leak_shift_mV"]["transform"] == "linear"


def test_peak_and_interspike_trough_are_the_physiology_checks_measures(block_eval) -> None:  # noqa: ANN001
    """ap_peak_mV and isi_trough_mV (the objective's) equal the physiology checks' median AP peak and interspike
    trough on the same traces, and the trough tells a too-weak K+ model (shallow troughs) from the truth."""
    from noble.fit.physiology import sweep_measures

    prob, ev, _ = block_eval
    for c in range(ev.v_mV.shape[0]):
        for k, s in enumerate(prob.recording.sweeps):
            m = sweep_measures(ev.v_mV[c, k], ev.dt_ms, s.stim_start_ms, s.stim_end_ms)
            peak, trough = ev.features["ap_peak_mV"][c, k], ev.features["isi_trough_mV"][c, k]
            if m["n"]:
                assert peak == pytest.approx(float(np.median(m["peaks_mV"])), abs=0.2)
            else:
                assert np.isnan(peak)
            if len(m["troughs_mV"]):
                assert trough == pytest.approx(float(np.median(m["troughs_mV"])), abs=1e-9)
            else:
                assert np.isnan(trough)
    # g_Kd x 0.5 at 200 pA (before it blocks): the trough sits well above the truth's, and the term says so
    k = prob.term_labels.index(("sweep 2 (+200 pA)", "isi_trough_mV"))
    assert ev.features["isi_trough_mV"][1, 2] > ev.features["isi_trough_mV"][0, 2] + 5.0
    assert abs(ev.z[0, k]) < 1.0 < 3.0 < abs(ev.z[1, k])


def test_peak_decline_is_the_last_three_peaks_against_the_first_three() -> None:
    """ap_peak_decline_mV: the median of a step's last 3 AP peaks minus that of its first 3 (APs that shrink over the
    train: negative); NaN below 6 APs, where the two groups would overlap."""
    t = np.arange(int(600.0 / DT)) * DT
    traces = []
    for heights in ((30.0 - 2.0 * np.arange(8)), np.full(8, 25.0), (30.0 - 2.0 * np.arange(5))):
        v = np.where((t >= START) & (t < END), -60.0, -65.0)
        for k, peak in enumerate(heights):
            v = v + (peak + 60.0) * np.exp(-(((t - (120.0 + 40.0 * k)) / 0.4) ** 2))
        traces.append(v)
    feats = spike_train_features(np.stack(traces), DT, START, END)
    assert feats["spike_count"].tolist() == [8, 8, 5]
    # 8 APs peaking 30, 28, ..., 16 mV: first three's median 28, last three's 18
    assert feats["ap_peak_decline_mV"][0] == pytest.approx(-10.0, abs=0.05)
    assert feats["ap_peak_decline_mV"][1] == pytest.approx(0.0, abs=0.05)
    assert np.isnan(feats["ap_peak_decline_mV"][2])
