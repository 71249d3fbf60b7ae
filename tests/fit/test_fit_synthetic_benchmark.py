"""Smoke of benchmarks/fit_synthetic.py's protocol for drawn cells: the steps are scaled by the preset's leak
resistance over the cell's, so a cell with twice the preset's leak conductance density and the same area gets
steps twice as large, and one four times smaller in area four times smaller ones (rounded to 5 pA); the preset
itself keeps them."""

from __future__ import annotations

import pytest

from noble.datagen.models import get as get_family

from _synth import load_benchmark  # tests/fit is on sys.path (pytest rootdir-relative import)

AMPS = [-100.0, -50.0, 50.0, 100.0, 150.0, 200.0, 300.0]


def test_drawn_cells_get_steps_sized_to_their_leak_resistance() -> None:
    bench = load_benchmark("fit_synthetic")
    rs = get_family("hh").preset_values("regular_spiking", {})
    assert bench.leak_resistance_MOhm(rs) == pytest.approx(1e3 / (0.0205 * 3.14159265 * (61.4e-4) ** 2 * 1e6))
    assert bench.protocol_for(rs, rs, AMPS) == AMPS
    leaky = {**rs, "g_leak": 2 * rs["g_leak"]}
    assert bench.protocol_for(leaky, rs, AMPS) == [2 * a for a in AMPS]
    small = {**rs, "diam_um": rs["diam_um"] / 2}
    assert bench.protocol_for(small, rs, AMPS) == [5.0 * round(a / 4 / 5.0) for a in AMPS]
