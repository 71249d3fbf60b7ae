"""Offline bridge balance (noble/fit/bridge.py): an unbalanced series resistance added to a synthetic hh cell's
recording is measured from the command's edges and removed; a balanced recording is left alone."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from noble.datagen.models import get as get_family
from noble.fit.bridge import MIN_APPLY_MOHM, balance_bridge, estimate_bridge
from noble.fit.targets import deflection
from noble.io import Recording

from _synth import synthetic_recording  # tests/fit is on sys.path (pytest rootdir-relative import)

HH = get_family("hh")
R_S_MOHM = 15.0


@pytest.fixture(scope="module")
def clean() -> Recording:
    # a pre-step too, so edges come in both directions and at two levels
    return synthetic_recording(HH.preset_values("regular_spiking", {}), [-100.0, -50.0, 50.0, 200.0], start_ms=150.0,
                               duration_ms=300.0, tail_ms=100.0, noise_pA=1.0, prestep_pA=-50.0, prestep_ms=50.0)


def _with_bridge_error(rec: Recording, r_MOhm: float) -> Recording:
    """What an amplifier with an unbalanced bridge records: V_m + R_s I."""
    return replace(rec, sweeps=[replace(s, v_mV=s.v_mV + 1e-3 * r_MOhm * s.command_pA()) for s in rec.sweeps])


def test_an_unbalanced_bridge_is_measured_and_removed(clean: Recording) -> None:
    dirty = _with_bridge_error(clean, R_S_MOHM)
    fixed, est = balance_bridge(dirty)
    assert est.applied and est.n_edges >= 8
    # the estimate is conservative: the straight lines read the membrane's charging bend as a few MOhm
    assert R_S_MOHM - 3.0 <= est.r_MOhm <= R_S_MOHM + 1.0, est
    for s_clean, s_dirty, s_fixed in zip(clean.sweeps, dirty.sweeps, fixed.sweeps):
        err_before = abs(deflection(s_dirty) - deflection(s_clean))
        err_after = abs(deflection(s_fixed) - deflection(s_clean))
        assert err_after <= 0.25 * err_before + 0.05, (s_clean.stim_amplitude_pA, err_before, err_after)
    # the rest (before the command leaves holding) is untouched
    np.testing.assert_allclose(fixed.sweeps[0].v_mV[:100], dirty.sweeps[0].v_mV[:100])


def test_a_balanced_recording_is_left_alone(clean: Recording) -> None:
    est = estimate_bridge(clean)
    assert est.r_MOhm is not None and abs(est.r_MOhm) < MIN_APPLY_MOHM, est
    out, est2 = balance_bridge(clean)
    assert not est2.applied and out is clean
    # 'off' measures but never changes the traces
    out_off, est_off = balance_bridge(_with_bridge_error(clean, R_S_MOHM), mode="off")
    assert not est_off.applied and est_off.r_MOhm > MIN_APPLY_MOHM
