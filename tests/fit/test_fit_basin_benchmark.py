"""Smoke of benchmarks/fit_basin.py on a recording simulated from known hh parameters: the true parameters
are the bottom of the objective's basin (the objective grows with the distance from them), and the report's
hall-of-fame figures are consistent (distances sorted, members needed >= members held)."""

from __future__ import annotations

import math

from noble.datagen.models import get as get_family

from _synth import load_benchmark, synthetic_recording  # tests/fit is on sys.path (pytest rootdir-relative import)

HH = get_family("hh")
TRUTH = HH.preset_values("fast_spiking", {"diam_um": 58.0, "g_leak": 0.045, "V_T": -56.0, "g_Kd": 4.6})



def test_the_true_parameters_are_the_bottom_of_the_basin() -> None:
    rec = synthetic_recording(TRUTH, [-60, 60, 120, 240], duration_ms=300.0, tail_ms=100.0, noise_pA=2.0, seed=3)
    res = load_benchmark("fit_basin").basin(rec, dict(TRUTH), per_radius=6, radii=(0.05, 0.4), seed=0)
    near, far = res["radii"]["0.05"], res["radii"]["0.4"]
    print(f"\nbasin: reference {res['reference_objective']:.3f}, r 0.05 median {near['median']:.3f}, "
          f"r 0.4 median {far['median']:.3f}; nearest hall-of-fame member at r "
          f"{res['hall_of_fame']['distance_nearest']:.3f}")
    # the truth fits its own noisy recording at about the noise level, and moving away only makes it worse
    assert res["reference_objective"] < 1.0
    assert res["reference_objective"] < near["best"]
    assert near["median"] < far["median"]
    assert far["median"] > 3.0 * res["reference_objective"]
    hof = res["hall_of_fame"]
    assert hof["distances_nearest"] == sorted(hof["distances_nearest"])
    assert hof["distance_nearest"] == hof["distances_nearest"][0] > 0.0
    assert len(hof["objective_nearest"]) == len(hof["distances_nearest"]) == 8
    if res["largest_radius_median_within_target"] is not None:
        assert hof["members_needed_for_target_radius"] >= hof["n_members"] or \
            hof["distance_nearest"] <= res["largest_radius_median_within_target"]
    else:
        assert math.isinf(hof["members_needed_for_target_radius"])
    assert len(res["stage1"]["objective"]) == len(res["stage1"]["distance"]) >= 1
