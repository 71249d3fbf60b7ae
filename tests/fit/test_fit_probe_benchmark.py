"""Smoke of benchmarks/fit_probe.py on a noise-free recording simulated from known hh parameters with I_AHP: at the
truth (E_leak re-pinned and the area re-solved, as the search does) the objective is ~0 and every check passes;
the same grid point without the current settles too high after its one AP and fires on where the cell stops."""

from __future__ import annotations


from noble.datagen.models import get as get_family
from noble.fit.hhmodel import NAMES, params_row

from _synth import load_benchmark, synthetic_recording  # tests/fit is on sys.path (pytest rootdir-relative import)

HH = get_family("hh")
TRUTH = {**HH.preset_values("regular_spiking", {}), "g_AHP": 0.2, "tau_AHP": 1000.0, "g_M": 0.05}



def test_the_probe_scores_the_truth_and_tells_the_missing_current() -> None:
    rec = synthetic_recording(TRUTH, [-50.0, 50.0, 100.0, 150.0, 200.0], start_ms=50.0, duration_ms=400.0,
                              tail_ms=100.0, noise_pA=0.0)
    row = params_row(TRUTH)
    doc = {"parameters": {n: {"value": float(v)} for n, v in zip(NAMES, row)},
           "free_parameters": [{"name": "E_leak", "transform": "solved"}, {"name": "diam_um", "transform": "solved"}]}
    truth, without = load_benchmark("fit_probe").probe(doc, rec, [("g_AHP", "set", [0.2, 0.0])])
    assert truth["point"] == {"g_AHP": 0.2} and without["point"] == {"g_AHP": 0.0}
    assert abs(truth["diam_um"] - TRUTH["diam_um"]) < 0.01 * TRUTH["diam_um"]  # the area solve finds the cell's
    assert truth["objective"] < 0.05 and truth["failed"] == [], truth["failed"]
    assert truth["by_check"]["late_deflection"]["ok"] >= 2  # it fires and settles, and that is judged
    assert without["objective"] > 5.0
    assert "sweep 1 (+50 pA): late_deflection" in without["failed"]  # one AP, then too high
    assert {f"sweep {k} (+{a} pA): stops_early" for k, a in ((2, 100), (3, 150), (4, 200))} <= set(without["failed"])
    assert without["rms_z"]["late_deflection_mV"] > 2.0 > truth["rms_z"]["late_deflection_mV"]
