"""hh_mc: multi-compartment Pospischil + I_h neuron in Brian2, checked against the same model in NEURON."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from noble.datagen.models.hh_mc import AIS, AXON, DEND, SOMA, HHMC, resting_potential
from noble.datagen.simulate import steps_matrix
from noble.datagen.simulate_mc import simulate_multi

DT = 0.025
# Every Brian2 run here has the same stimulus grid, length and (padded) width: one compiled module.
STIM_DT = 0.1
START, DUR, TOTAL = 20.0, 230.0, 250.0  # 250 ms traces, steps of 230 ms
SUPRA_pA = np.array([150.0, 200.0, 300.0, 450.0, 600.0])
HYPER_pA = -60.0


def preset_row(family: type[HHMC] = HHMC, **over: float) -> np.ndarray:
    vals = family.preset_values(overrides=over)
    return np.array([vals[k] for k in family.param_names()])


def test_structure_and_parameters() -> None:
    """~120 compartments in the four regions, Rall's 3/2 rule at branch points, parameters in range."""
    n = HHMC.n_compartments()
    assert 100 <= n <= 300
    vals = HHMC.preset_values()
    morph, table, cv = HHMC.cell(vals)
    assert table.n == n == morph.total_compartments
    counts = np.bincount(table.region, minlength=4)
    spec = HHMC.morphology_spec
    assert counts[SOMA] == 1 and counts[AIS] == spec.nseg_ais and counts[AXON] == spec.nseg_axon
    assert counts[DEND] == spec.n_dend * (spec.nseg_dend + spec.branches * spec.nseg_branch)
    dend = morph.children["dend0"]
    d_parent = float(dend.diameter[0] / 1e-6)
    d_children = [float(c.diameter[0] / 1e-6) for c in dend.children]
    assert sum(d**1.5 for d in d_children) == pytest.approx(d_parent**1.5, rel=1e-9)
    # Densities follow the regions: the AIS carries the highest Na+ density, I_h only soma/dendrites.
    assert np.all(cv["g_Na"][table.region == AIS] == vals["g_Na_ais"])
    assert np.all(cv["g_h"][table.region == AXON] == 0) and np.all(cv["g_h"][table.region == DEND] == vals["g_h_dend"])
    rng = np.random.default_rng(1)
    P = HHMC.sample_params(50, rng, cv=0.2, sd_potential=2.0)
    HHMC.check_params(P)
    assert P.shape == (50, len(HHMC.params)) and np.std(P[:, HHMC.param_names().index("g_Na_ais")]) > 0
    with pytest.raises(ValueError, match="Ri"):
        HHMC.pack(np.stack([preset_row(), preset_row(Ri=200.0)]))


def test_resting_state_and_packed_neurons_are_independent() -> None:
    """Neurons start at their steady state (no drift without input), and packing n neurons into one
    SpatialNeuron does not couple them: a spiking neighbour leaves the others at rest, and a neuron's
    trace does not depend on what it is packed with."""
    a = preset_row()
    b = preset_row(soma_diam_um=16.0, E_leak=-68.0, g_h_dend=0.05)
    P = np.stack([a, b, a, b])
    stim = steps_matrix(np.array([0.0, 0.0, 400.0, 150.0]), START, 100.0, TOTAL, STIM_DT)
    res = simulate_multi(HHMC, P, stim, stim_dt_ms=STIM_DT, duration_ms=TOTAL, dt_ms=DT)
    values = HHMC.row_values(b)
    _m, table, cv = HHMC.cell(values)
    v_rest_b, ok = resting_potential(table, cv, values["Ri"])
    assert ok
    # Resting neurons stay put to within 0.01 mV while neighbours fire.
    assert len(res.spike_times_ms[2]) > 5 and len(res.spike_times_ms[3]) > 0
    assert np.ptp(res.v_mV[0]) < 0.01 and np.ptp(res.v_mV[1]) < 0.01
    assert res.v_mV[1, 0] == pytest.approx(v_rest_b[table.soma_index], abs=1e-4)
    assert len(res.spike_times_ms[0]) == len(res.spike_times_ms[1]) == 0
    # Neuron 3 alone gives the same trace as packed with three others.
    alone = simulate_multi(HHMC, P[3:], stim[3:], stim_dt_ms=STIM_DT, duration_ms=TOTAL, dt_ms=DT)
    np.testing.assert_allclose(alone.v_mV[0], res.v_mV[3], atol=1e-3)
    np.testing.assert_allclose(alone.spike_times_ms[0], res.spike_times_ms[3], atol=1e-9)


# ---- Brian2 vs NEURON ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def both() -> tuple:
    pytest.importorskip("neuron")
    from noble.datagen.neuron_mc import simulate_neuron_mc

    amps = np.concatenate([[HYPER_pA], SUPRA_pA])
    P = np.repeat(preset_row()[None, :], len(amps), axis=0)
    nrn = simulate_neuron_mc(HHMC, P, amps, START, DUR, TOTAL, dt_ms=DT, record_dt_ms=0.1)
    b2 = simulate_multi(HHMC, P, steps_matrix(amps, START, DUR, TOTAL, STIM_DT), stim_dt_ms=STIM_DT,
                        duration_ms=TOTAL, dt_ms=DT, record_dt_ms=0.1)
    return amps, b2, nrn


@pytest.mark.neuron
def test_subthreshold_voltage_matches_neuron(both) -> None:
    amps, b2, nrn = both
    v_b, v_n = b2.v_mV[0].astype(float), nrn.v_mV[0].astype(float)
    rest = v_b[int(START / 0.1) - 1]
    assert v_b.min() < rest - 3.0  # a real hyperpolarisation (so the RMS test means something)
    rms = float(np.sqrt(np.mean((v_b - v_n) ** 2)))
    assert rms < 1.0, rms


@pytest.mark.neuron
def test_spike_times_match_neuron(both) -> None:
    amps, b2, nrn = both
    for k in range(1, len(amps)):
        sb = b2.spike_times_ms[k][b2.spike_times_ms[k] < START + 200.0]
        sn = nrn.spike_times_ms[k][nrn.spike_times_ms[k] < START + 200.0]
        assert len(sb) == len(sn) > 0, (amps[k], len(sb), len(sn))
        assert np.max(np.abs(sb - sn)) < 0.5, amps[k]


@pytest.mark.neuron
def test_spike_counts_match_neuron_at_five_amplitudes(both) -> None:
    amps, b2, nrn = both
    counts_b, counts_n = b2.spike_counts[1:], nrn.spike_counts[1:]
    np.testing.assert_array_equal(counts_b, counts_n)
    assert np.all(np.diff(counts_b) > 0)  # F-I curve increases over the 5 amplitudes
    assert counts_b[-1] * 1000.0 / DUR > 200.0  # fast spiking: > 200 Hz at the top amplitude


SWC = """# soma, a tapering dendrite that branches, an axon (types 1, 3, 2)
1 1 0 0 0 8 -1
2 3 10 0 0 1.2 1
3 3 30 0 0 1.0 2
4 3 60 0 0 0.8 3
5 3 90 10 0 0.6 4
6 3 120 20 0 0.5 5
7 3 90 -10 0 0.6 4
8 3 120 -25 0 0.4 7
9 2 -10 0 0 0.7 1
10 2 -20 0 0 0.6 9
11 2 -30 0 0 0.6 10
12 2 -80 0 0 0.5 11
13 2 -150 0 0 0.5 12
"""


@pytest.mark.neuron
def test_swc_morphology_matches_neuron(tmp_path: Path) -> None:
    """An SWC morphology (frustum compartments, one per point): same subthreshold and spiking in both."""
    pytest.importorskip("neuron")
    from noble.datagen.neuron_mc import simulate_neuron_mc

    path = tmp_path / "cell.swc"
    path.write_text(SWC)
    fam = HHMC.with_morphology(swc_path=str(path))
    assert fam.n_compartments() == 13
    row = preset_row(fam, ais_length_um=25.0, g_leak=0.05)
    _m, table, _cv = fam.cell(fam.row_values(row))
    assert np.count_nonzero(table.region == AIS) == 2 and np.count_nonzero(table.region == AXON) == 3
    amps = np.array([-20.0, 60.0])
    P = np.repeat(row[None, :], 2, axis=0)
    nrn = simulate_neuron_mc(fam, P, amps, START, 100.0, TOTAL, dt_ms=DT)
    b2 = simulate_multi(fam, P, steps_matrix(amps, START, 100.0, TOTAL, STIM_DT), stim_dt_ms=STIM_DT,
                        duration_ms=TOTAL, dt_ms=DT)
    assert float(np.sqrt(np.mean((b2.v_mV[0] - nrn.v_mV[0]) ** 2))) < 1.0
    assert b2.spike_counts[1] == nrn.spike_counts[1] > 0
    assert np.max(np.abs(b2.spike_times_ms[1] - nrn.spike_times_ms[1])) < 0.5
