"""A recording sampled at 200 kHz (the Allen Cell Types rate) with recording noise is measured as its clean self once
the fit has filtered it at 10 kHz and decimated it (noble/fit/resample.py); measured raw, the noise's dV/dt trips
eFEL's AP-onset threshold and the AP onset and half-width come out wrong (the evidence the fit frees parameters on)."""

from __future__ import annotations

import numpy as np

from noble.datagen.models.hh import HH
from noble.fit.objective import FitProblem
from noble.fit.resample import limit_sampling_rate
from noble.io import Recording, Sweep

from _synth import synthetic_recording


def _resampled(rec: Recording, factor: int, noise_mV: float, seed: int = 0) -> Recording:
    """Every sweep linearly interpolated onto a grid `factor` times finer, with white recording noise."""
    rng = np.random.default_rng(seed)
    out = []
    for s in rec.sweeps:
        t = np.arange(s.n_samples * factor) * (s.dt_ms / factor)
        v = np.interp(t, s.time_ms, s.v_mV) + rng.normal(0.0, noise_mV, len(t))
        out.append(Sweep(v_mV=v, i_pA=np.repeat(s.i_pA, factor), dt_ms=s.dt_ms / factor,
                         stim_amplitude_pA=s.stim_amplitude_pA, stim_start_ms=s.stim_start_ms,
                         stim_end_ms=s.stim_end_ms, index=s.index))
    return Recording(out, source="synthetic-200kHz", format="memory", cell="synthetic")


def _ap_measures(rec: Recording) -> dict[str, np.ndarray]:
    t = FitProblem.from_recording(rec).targets
    peak, amp = t.feature_array("ap_peak_mV"), t.feature_array("ap_amplitude_mV")
    return {"onset_mV": peak - amp, "peak_mV": peak, "half_width_ms": t.feature_array("ap_half_width_ms"),
            "count": t.feature_array("spike_count")}


def test_a_noisy_200kHz_recording_is_measured_as_its_clean_self_once_filtered() -> None:
    clean = synthetic_recording(HH.preset_values("regular_spiking", {}), [-50.0, 150.0, 250.0], duration_ms=300.0,
                                dt_ms=0.025, noise_pA=0.0)
    fast = _resampled(clean, 5, noise_mV=0.3)  # 200 kHz, the Allen rate
    ref = _ap_measures(clean)
    spiking = ref["count"] > 0
    assert spiking.sum() == 2 and np.all(ref["onset_mV"][spiking] < -40.0)  # RS APs start near -50 mV

    raw = _ap_measures(fast)
    onset_err = np.abs(raw["onset_mV"] - ref["onset_mV"])[spiking]
    hw_err = np.abs(raw["half_width_ms"] / ref["half_width_ms"] - 1.0)[spiking]
    assert not np.all((onset_err < 10.0) & (hw_err < 0.3)), (onset_err, hw_err)  # measured raw: wrong

    lim, note = limit_sampling_rate(fast)
    assert note is not None and "10 kHz" in note
    assert {round(s.sampling_rate_Hz) for s in lim.sweeps} == {50_000}  # 200 kHz / 4
    got = _ap_measures(lim)
    np.testing.assert_array_equal(got["count"], ref["count"])
    np.testing.assert_allclose(got["onset_mV"][spiking], ref["onset_mV"][spiking], atol=3.0)
    np.testing.assert_allclose(got["peak_mV"][spiking], ref["peak_mV"][spiking], atol=1.0)
    np.testing.assert_allclose(got["half_width_ms"][spiking], ref["half_width_ms"][spiking], rtol=0.1)


def test_recordings_at_50kHz_or_slower_are_left_alone_and_the_step_window_is_kept() -> None:
    rec = synthetic_recording(HH.preset_values("fast_spiking", {}), [100.0], duration_ms=100.0, tail_ms=50.0,
                              dt_ms=0.05)
    same, note = limit_sampling_rate(rec)
    assert same is rec and note is None
    fast = _resampled(rec, 4, noise_mV=0.0)  # 80 kHz -> decimated by 2 to 40 kHz
    lim, note = limit_sampling_rate(fast)
    s, f = lim.sweeps[0], fast.sweeps[0]
    assert note is not None and s.dt_ms == 2 * f.dt_ms
    assert (s.stim_start_ms, s.stim_end_ms, s.stim_amplitude_pA) == (f.stim_start_ms, f.stim_end_ms,
                                                                     f.stim_amplitude_pA)
    assert s.i_pA is not None and set(np.unique(s.i_pA)) == set(np.unique(f.i_pA))
    assert abs(s.duration_ms - f.duration_ms) < s.dt_ms
