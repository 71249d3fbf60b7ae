"""Bad input to a fit (noble/fit/screen.py): mixed sampling rates are refused naming the sweeps, sweeps with a
too-short step, no baseline or clipped voltage are set aside with a note naming each (refused when none is
left), and a noise-free simulated recording (flat rests and steady states) is not mistaken for a clipped one."""

from __future__ import annotations

import numpy as np
import pytest

from noble.datagen.models import get as get_family
from noble.fit.api import fit_recording
from noble.fit.screen import clipped, screen_for_fit
from noble.io import Recording, RecordingError, Sweep

from _synth import synthetic_recording  # tests/fit is on sys.path (pytest rootdir-relative import)

HH = get_family("hh")


@pytest.fixture(scope="module")
def rec() -> Recording:
    return synthetic_recording(HH.preset_values("fast_spiking", {"diam_um": 60.0}), [-50.0, 0.0, 150.0, 300.0],
                               start_ms=30.0, duration_ms=100.0, tail_ms=20.0, noise_pA=0.0)


def _copy(s: Sweep, **kw: object) -> Sweep:
    args = dict(v_mV=s.v_mV.copy(), i_pA=s.command_pA().copy(), dt_ms=s.dt_ms, stim_amplitude_pA=s.stim_amplitude_pA,
                stim_start_ms=s.stim_start_ms, stim_end_ms=s.stim_end_ms, index=s.index)
    args.update(kw)
    return Sweep(**args)  # type: ignore[arg-type]


def test_a_clean_noise_free_recording_passes_untouched(rec: Recording) -> None:
    out, notes = screen_for_fit(rec)
    assert out is rec and notes == []
    assert all(clipped(s) is None for s in rec.sweeps)  # flat simulated rests are not rails


def test_clipped_aps_are_set_aside_naming_the_sweep(rec: Recording) -> None:
    s = rec.sweeps[3]
    v = s.v_mV.copy()
    v[v > 20.0] = 20.0  # every AP cut flat at a +20 mV rail
    bad = _copy(s, v_mV=v)
    assert "clipped" in (clipped(bad) or "") and "maximum" in clipped(bad)  # type: ignore[operator]
    out, notes = screen_for_fit(Recording([*rec.sweeps[:3], bad], rec.source))
    assert [x.index for x in out.sweeps] == [0, 1, 2]
    assert len(notes) == 1 and notes[0].startswith("sweep 3 (+300 pA) set aside: voltage clipped")
    # a recording with nothing else left is refused, with the reason
    with pytest.raises(RecordingError, match="no sweep can be fitted.*sweep 3 .*clipped"):
        screen_for_fit(Recording([bad], rec.source))


def test_mixed_sampling_rates_are_refused_naming_the_sweeps(rec: Recording) -> None:
    s = rec.sweeps[2]
    coarse = Sweep(v_mV=s.v_mV[::2].copy(), i_pA=s.command_pA()[::2].copy(), dt_ms=2 * s.dt_ms,
                   stim_amplitude_pA=s.stim_amplitude_pA, stim_start_ms=s.stim_start_ms, stim_end_ms=s.stim_end_ms,
                   index=7)
    mixed = Recording([*rec.sweeps, coarse], rec.source)
    with pytest.raises(RecordingError, match=r"mixed sampling rates \(sweeps 7 at 10 kHz; sweeps 0, 1, 2, 3 at 20 kHz\)"):
        screen_for_fit(mixed)
    with pytest.raises(RecordingError, match="mixed sampling rates"):  # the fit itself refuses before any work
        fit_recording(mixed, stage1="off")


def test_a_protocol_without_a_long_enough_constant_window_is_refused(rec: Recording) -> None:
    s = rec.sweeps[2]
    n = s.n_samples
    i = np.zeros(n)
    a = int(round(30.0 / s.dt_ms))
    i[a: a + 40] = 500.0  # a 2 ms pulse
    pulse = Sweep(v_mV=s.v_mV.copy(), i_pA=i, dt_ms=s.dt_ms, stim_amplitude_pA=500.0, stim_start_ms=30.0,
                  stim_end_ms=32.0, index=5)
    out, notes = screen_for_fit(Recording([*rec.sweeps, pulse], rec.source))
    assert len(out) == 4 and "sweep 5 (+500 pA) set aside: its test step lasts 2 ms" in notes[0]
    with pytest.raises(RecordingError, match="no constant window long enough"):
        screen_for_fit(Recording([pulse], rec.source))
