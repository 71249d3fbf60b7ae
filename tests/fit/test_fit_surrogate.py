"""Stage 1 with the shipped surrogate (fails when noble/assets/hh_fs does not load): on a recording
simulated (Brian2) from the fast-spiking preset on the surrogate's own protocol, the embedding fitted by
gradient descent through the FNO recovers the preset's rheobase and F-I slope within its reported
uncertainty, and the two-stage path hands stage 2 a warm start from the hall of fame."""

from __future__ import annotations

import numpy as np
import pytest

from noble.datagen.features import rheobase_and_slope
from noble.datagen.models import get as get_family
from noble.fit.hhmodel import params_row
from noble.fit.objective import FitProblem
from noble.fit.surrogate_stage import SurrogateStageConfig, SurrogateUnavailable, fit_embedding, load

from _synth import synthetic_recording  # tests/fit is on sys.path (pytest rootdir-relative import)

HH = get_family("hh")


@pytest.fixture(scope="module")
def surrogate():  # noqa: ANN201
    try:
        return load(None)
    except SurrogateUnavailable as exc:  # the shipped checkpoint is part of the package: fail, do not skip
        pytest.fail(f"the shipped surrogate does not load: {exc}")


def test_embedding_fit_recovers_rheobase_and_fi_slope(surrogate) -> None:  # noqa: ANN001
    p = surrogate.config.stimulus
    truth = HH.preset_values("fast_spiking")
    amps = [a for a in p.amplitudes_pA if a < 0][:1] + [a for a in p.amplitudes_pA if a > 0][:: 3]
    rec = synthetic_recording(truth, amps, start_ms=p.start_ms, duration_ms=p.duration_ms, tail_ms=100.0,
                              noise_pA=1.0, seed=2)
    problem = FitProblem.from_recording(rec)
    I_thr, s_thr = rheobase_and_slope(HH, params_row(truth)[None], start_ms=p.start_ms, duration_ms=p.duration_ms,
                                      tol_pA=2.0)
    fit = fit_embedding(problem, surrogate, SurrogateStageConfig(n_starts=1, steps=5, max_sweeps=4))
    names = fit.feature_names
    true = {"I_thr_pA": float(I_thr[0]), "s_thr_Hz_per_pA": float(s_thr[0])}
    print(f"\nstage 1: objective {fit.objective:.2f}, {fit.wall_s:.1f} s")
    for n in true:
        j = names.index(n)
        print(f"  {n}: truth {true[n]:.3f}  fit {fit.features[j]:.3f} +- {fit.sd[j]:.3f} (mean {fit.mean[j]:.3f})")
    for n, val in true.items():
        j = names.index(n)
        assert abs(fit.mean[j] - val) <= 2.5 * fit.sd[j] + 1e-9, (n, val, fit.mean[j], fit.sd[j])
        lo, hi = surrogate.config.feature_ranges[n]
        assert fit.sd[j] < 0.5 * (hi - lo)  # informative: narrower than the trained range
    assert np.all(np.isfinite(fit.cov)) and np.all(np.linalg.eigvalsh(fit.cov_x) > 0)
    assert fit.surrogate_v_mV.shape == (len(fit.sweeps), surrogate.config.n_time)
