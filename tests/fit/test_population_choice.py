"""The fit's surrogate stage warm-starts from the shipped population nearest the recording: a regular-spiking
cell is not started from the fast-spiking interneurons (issue 17). Recordings simulated from the presets
(noise-free Brian2, 1 s long squares as the populations were trained on)."""

from __future__ import annotations

import numpy as np
import pytest

from noble.datagen.models.hh import HH
from noble.fit.objective import FitProblem, ObjectiveConfig
from noble.fit.surrogate_stage import choose_population, population_distance
from noble.operator import shipped_surrogate_paths
from noble.operator.checkpoint import read_config

from _synth import synthetic_recording  # tests/fit is on sys.path (pytest rootdir-relative import)

AMPS = [-50.0, 0.0, 40.0, 80.0, 120.0, 160.0, 200.0, 260.0, 320.0, 400.0]


@pytest.mark.parametrize("preset, population", [("fast_spiking", "hh_fs"), ("regular_spiking", "hh_rs")])
def test_recording_goes_to_its_own_cell_class(preset: str, population: str) -> None:
    shipped = shipped_surrogate_paths()
    if population not in shipped:
        pytest.fail(f"{population} is not shipped ({sorted(shipped)})")
    params = {k: v for k, v in HH.preset_values(preset).items()}
    rec = synthetic_recording(params, AMPS, duration_ms=1000.0, noise_pA=0.0)
    problem = FitProblem.from_recording(rec, ObjectiveConfig())
    path, dist = choose_population(problem)
    assert path is not None and path.name == population, dist
    assert dist[population] == min(dist.values()) and len(dist) >= 2


def test_distance_is_zero_on_a_member_and_grows_outside() -> None:
    cfg = read_config(shipped_surrogate_paths()["hh_fs"])
    member = dict(zip(cfg.feature_names, cfg.population[0]))
    assert population_distance(cfg, member) == pytest.approx(0.0, abs=1e-12)
    far = {**member, "I_thr_pA": member["I_thr_pA"] + 10 * np.ptp(np.array(cfg.population)[:, 0])}
    assert population_distance(cfg, far) > 1.0
    assert population_distance(cfg, {}) == float("inf")
