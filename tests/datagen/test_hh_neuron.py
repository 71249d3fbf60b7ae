"""Cross-check of the Brian2 `hh` family (Pospischil 2008) against the same model built in NEURON.

* Rheobase (Brian2: `features.rheobase_and_slope`, NEURON: `neuron_ref.rheobase_neuron`, both to 1 pA on the
  same 300 ms step) agrees within 10 % for every preset.
* Spike trains: Brian2 at the data-generation settings (dt 0.025 ms, the family's integration method) against
  a converged NEURON reference (dt 0.005 ms, Crank-Nicolson, within ~0.07 ms of the dt -> 0 limit here):
  same spike count and every spike within 0.5 ms, for every preset at three depolarising amplitudes, and the
  subthreshold response to a hyperpolarising step within 0.1 mV (leak, I_M and I_T at rest).

Every Brian2 run here has 16 rows and the same duration (as in test_hh.py), so the cython code, whose
TimedArray bakes in the array shape, compiles once and is shared with `rheobase_and_slope`'s rounds.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("neuron")

from noble.datagen.features import rheobase_and_slope  # noqa: E402
from noble.datagen.models.hh import HH  # noqa: E402
from noble.datagen.neuron_ref import rheobase_neuron, simulate_neuron  # noqa: E402
from noble.datagen.simulate import simulate, steps_matrix  # noqa: E402

pytestmark = pytest.mark.neuron

PRESETS = ["fast_spiking", "regular_spiking", "intrinsically_bursting", "low_threshold_spiking"]
START_MS, STEP_MS = 50.0, 300.0
TOTAL_MS = START_MS + STEP_MS + 100.0  # = the bisection rounds' run length in rheobase_and_slope
DT_MS, STIM_DT_MS = 0.025, 0.1
AMPS_PA = [-100.0, 150.0, 250.0, 400.0]  # one hyperpolarising (passive) + three spiking amplitudes
SPIKE_TOL_MS = 0.5
REF_DT_MS = 0.005  # NEURON reference step


def _preset_rows(presets: list[str]) -> np.ndarray:
    names = HH.param_names()
    return np.array([[HH.preset_values(p)[k] for k in names] for p in presets])


@pytest.fixture(scope="module")
def rheobases() -> dict[str, tuple[float, float]]:
    params = _preset_rows(PRESETS)
    # 4 presets x 4 probes = 16 rows per round (same compiled shape as the spike-train run below).
    i_brian, _ = rheobase_and_slope(HH, params, start_ms=START_MS, duration_ms=STEP_MS, max_pA=1000.0,
                                    tol_pA=1.0, probes_per_round=4, dt_ms=DT_MS, stim_dt_ms=STIM_DT_MS)
    i_neuron = rheobase_neuron(params, start_ms=START_MS, duration_ms=STEP_MS, max_pA=1000.0, tol_pA=1.0,
                               dt_ms=DT_MS)
    return {p: (float(b), float(n)) for p, b, n in zip(PRESETS, i_brian, i_neuron)}


@pytest.fixture(scope="module")
def trains():
    rows = np.repeat(_preset_rows(PRESETS), len(AMPS_PA), axis=0)
    amps = np.tile(AMPS_PA, len(PRESETS))
    brian = simulate(HH, rows, steps_matrix(amps, START_MS, STEP_MS, TOTAL_MS, STIM_DT_MS), stim_dt_ms=STIM_DT_MS,
                     duration_ms=TOTAL_MS, dt_ms=DT_MS, record_dt_ms=0.1)
    ref = simulate_neuron(rows, amps, START_MS, STEP_MS, TOTAL_MS, dt_ms=REF_DT_MS, record_dt_ms=0.1,
                          secondorder=2)
    return amps, brian, ref


@pytest.mark.parametrize("preset", PRESETS)
def test_rheobase_matches_neuron(rheobases, preset):
    i_brian, i_neuron = rheobases[preset]
    assert np.isfinite(i_brian) and np.isfinite(i_neuron), (i_brian, i_neuron)
    assert i_neuron > 0, f"{preset}: NEURON cell fires without input"
    assert abs(i_brian - i_neuron) <= 0.10 * i_neuron, (
        f"{preset}: rheobase Brian2 {i_brian:.1f} pA vs NEURON {i_neuron:.1f} pA (> 10 %)")


@pytest.mark.parametrize("preset", PRESETS)
def test_spike_times_match_neuron(trains, preset):
    amps, brian, ref = trains
    p = PRESETS.index(preset)
    for a, amp in enumerate(AMPS_PA):
        if amp <= 0:
            continue
        k = p * len(AMPS_PA) + a
        sb, sn = brian.spike_times_ms[k], ref.spike_times_ms[k]
        assert len(sn) >= 2, f"{preset} at {amp} pA: reference fires {len(sn)} spikes; choose a larger amplitude"
        m = min(len(sb), len(sn))
        worst = float(np.max(np.abs(sb[:m] - sn[:m]))) if m else np.inf
        assert len(sb) == len(sn) and worst <= SPIKE_TOL_MS, (
            f"{preset} at {amp} pA (Brian2 method {HH.method!r}, dt {DT_MS} ms): {len(sb)} vs {len(sn)} spikes, "
            f"worst spike-time difference {worst:.2f} ms > {SPIKE_TOL_MS} ms")


@pytest.mark.parametrize("preset", PRESETS)
def test_subthreshold_response_matches_neuron(trains, preset):
    amps, brian, ref = trains
    k = PRESETS.index(preset) * len(AMPS_PA) + AMPS_PA.index(-100.0)
    window = slice(0, int(round((START_MS + STEP_MS) / 0.1)))  # rest and the hyperpolarising step
    dv = np.abs(brian.v_mV[k, window].astype(float) - ref.v_mV[k, window])
    sag = float(ref.v_mV[k, window].max() - ref.v_mV[k, window].min())
    assert sag > 5.0, f"{preset}: the -100 pA step moves v by only {sag:.1f} mV"
    assert dv.max() < 0.1, f"{preset}: subthreshold v differs by up to {dv.max():.3f} mV"


def test_d_current_delays_firing_and_matches_neuron():
    """Golomb et al. (2007) I_D: at the same step the slowly inactivating K+ current delays the first spike
    (the delayed firing of FS cells), and Brian2 and NEURON agree on the spike trains with it switched on."""
    names = HH.param_names()
    base = HH.preset_values("fast_spiking")
    rows = np.array([[{**base, "g_D": g_D}[k] for k in names] for g_D in (0.0, 1.0, 0.0, 1.0)])
    # 190 and 290 pA: about the current densities of the 250 and 400 pA used while the FS preset's diameter
    # was 67 um (now 56.9 um: 72 % of the area)
    amps = np.array([190.0, 190.0, 290.0, 290.0])
    brian = simulate(HH, rows, steps_matrix(amps, START_MS, STEP_MS, TOTAL_MS, STIM_DT_MS), stim_dt_ms=STIM_DT_MS,
                     duration_ms=TOTAL_MS, dt_ms=DT_MS, record_dt_ms=0.1)
    ref = simulate_neuron(rows, amps, START_MS, STEP_MS, TOTAL_MS, dt_ms=REF_DT_MS, record_dt_ms=0.1, secondorder=2)
    for k in (1, 3):
        sb, sn = brian.spike_times_ms[k], ref.spike_times_ms[k]
        assert len(sn) >= 2 and len(sb) == len(sn), (amps[k], len(sb), len(sn))
        assert float(np.max(np.abs(sb - sn))) <= SPIKE_TOL_MS, (amps[k], sb[:3], sn[:3])
    for off, on in ((0, 1), (2, 3)):  # 190 pA: 15 vs 149 ms; 290 pA: 10 vs 27 ms
        lat_off = brian.spike_times_ms[off][0] - START_MS
        lat_on = brian.spike_times_ms[on][0] - START_MS
        assert lat_on > 1.5 * lat_off, (amps[off], lat_off, lat_on)
        assert len(brian.spike_times_ms[on]) < len(brian.spike_times_ms[off])  # and it lowers the rate


def test_h_current_gives_sag_and_rebound_and_matches_neuron():
    """Kole et al. (2006) I_h: a -150 pA step sags back toward rest (the HCN current activates with a ~50-80 ms
    time constant) and the offset rebounds above rest; without it there is neither; Brian2 and NEURON agree on
    the whole trace."""
    names = HH.param_names()
    base = HH.preset_values("regular_spiking")
    rows = np.array([[{**base, "g_h": g_h}[k] for k in names] for g_h in (0.0, 0.05)])
    amps = np.array([-150.0, -150.0])
    brian = simulate(HH, rows, steps_matrix(amps, START_MS, STEP_MS, TOTAL_MS, STIM_DT_MS), stim_dt_ms=STIM_DT_MS,
                     duration_ms=TOTAL_MS, dt_ms=DT_MS, record_dt_ms=0.1)
    ref = simulate_neuron(rows, amps, START_MS, STEP_MS, TOTAL_MS, dt_ms=REF_DT_MS, record_dt_ms=0.1, secondorder=2)
    a, b = int(round(START_MS / 0.1)), int(round((START_MS + STEP_MS) / 0.1))
    sag, rebound = [], []
    for k in range(2):
        v = brian.v_mV[k].astype(float)
        assert float(np.max(np.abs(v - ref.v_mV[k]))) < 0.1, k  # Brian2 vs NEURON, mV
        rest = float(v[a - 1])
        sag.append(float(v[b - 1] - v[a:b].min()))
        rebound.append(float(v[b:].max() - rest))
    assert sag[0] < 0.3 and sag[1] > 2.0, sag
    assert rebound[1] > rebound[0] + 1.0, rebound


def test_kir_rectifies_without_sag_and_matches_neuron():
    """Mahon et al. (2000) I_Kir: with it the steady-state deflection grows less than linearly with the injected
    current (the cell conducts more the further it is below E_K) and the response does not sag (no kinetics);
    without it the fast-spiking preset is near-linear there; Brian2 and NEURON agree on the whole trace."""
    names = HH.param_names()
    base = HH.preset_values("fast_spiking")
    amps = np.array([-25.0, -100.0, -25.0, -100.0])
    rows = np.array([[{**base, "g_Kir": g}[k] for k in names] for g in (0.0, 0.0, 0.5, 0.5)])
    brian = simulate(HH, rows, steps_matrix(amps, START_MS, STEP_MS, TOTAL_MS, STIM_DT_MS), stim_dt_ms=STIM_DT_MS,
                     duration_ms=TOTAL_MS, dt_ms=DT_MS, record_dt_ms=0.1)
    ref = simulate_neuron(rows, amps, START_MS, STEP_MS, TOTAL_MS, dt_ms=REF_DT_MS, record_dt_ms=0.1, secondorder=2)
    a, b = int(round(START_MS / 0.1)), int(round((START_MS + STEP_MS) / 0.1))
    per_pA = []
    for k in range(4):
        v = brian.v_mV[k].astype(float)
        assert float(np.max(np.abs(v - ref.v_mV[k]))) < 0.1, k  # Brian2 vs NEURON, mV
        steady = float(np.mean(v[b - 200:b]))  # the step's last 20 ms
        assert float(steady - v[a:b].min()) < 0.3, (k, "sag")
        per_pA.append((steady - float(v[a - 1])) / amps[k])  # mV per pA, > 0
    linear, rectified = per_pA[1] / per_pA[0], per_pA[3] / per_pA[2]
    assert linear > 0.9, per_pA  # leak + I_M: near-linear below rest
    assert rectified < 0.75, per_pA  # -100 pA moves v less than 4x what -25 pA does


def _first_ap_half_width_ms(v: np.ndarray, dt_ms: float) -> float:
    """Width of the first AP at half its height above its threshold (where dV/dt first exceeds 20 mV/ms)."""
    dvdt = np.diff(v) / dt_ms
    onset = int(np.argmax(dvdt > 20.0))
    peak = onset + int(np.argmax(v[onset:onset + int(5.0 / dt_ms)]))
    half = 0.5 * (v[onset] + v[peak])
    above = np.flatnonzero(v[onset:peak + int(10.0 / dt_ms)] > half)
    return float((above[-1] - above[0] + 1) * dt_ms)


def test_temperature_factor_slows_the_spike_and_matches_neuron():
    """phi_NaK (hh2.mod's tadj) divides the Na+ and Kd gates' time constants: at 0.4 (a slice ~8 C cooler than the
    model's 36 C, Q10 3) the fast-spiking preset's APs are >= 1.5x wider, with every spike
    of Brian2's train within SPIKE_TOL_MS of NEURON's at both."""
    names = HH.param_names()
    base = HH.preset_values("fast_spiking")
    assert base["phi_NaK"] == 1.0
    amps = np.array([250.0, 250.0])
    rows = np.array([[{**base, "phi_NaK": phi}[k] for k in names] for phi in (1.0, 0.4)])
    rec_dt = 0.025
    brian = simulate(HH, rows, steps_matrix(amps, START_MS, STEP_MS, TOTAL_MS, STIM_DT_MS), stim_dt_ms=STIM_DT_MS,
                     duration_ms=TOTAL_MS, dt_ms=DT_MS, record_dt_ms=rec_dt)
    ref = simulate_neuron(rows, amps, START_MS, STEP_MS, TOTAL_MS, dt_ms=REF_DT_MS, record_dt_ms=rec_dt,
                          secondorder=2)
    widths = []
    for k in range(2):
        v = brian.v_mV[k].astype(float)
        up_b = np.flatnonzero((v[:-1] < -20.0) & (v[1:] >= -20.0)) * rec_dt
        up_n = np.flatnonzero((ref.v_mV[k][:-1] < -20.0) & (ref.v_mV[k][1:] >= -20.0)) * rec_dt
        assert len(up_b) == len(up_n) >= 2, (k, len(up_b), len(up_n))
        assert float(np.max(np.abs(up_b - up_n))) < SPIKE_TOL_MS, k
        widths.append(_first_ap_half_width_ms(v, rec_dt))
    assert widths[1] > 1.5 * widths[0], widths


def _agree_with_neuron(brian, ref, k: int) -> int:  # noqa: ANN001
    """Brian2 and NEURON agree on trace k: every upward -20 mV crossing within SPIKE_TOL_MS or, without one, the
    trace within 0.1 mV. Returns the crossings' count."""
    v = brian.v_mV[k].astype(float)
    up_b = np.flatnonzero((v[:-1] < -20.0) & (v[1:] >= -20.0)) * 0.1
    up_n = np.flatnonzero((ref.v_mV[k][:-1] < -20.0) & (ref.v_mV[k][1:] >= -20.0)) * 0.1
    assert len(up_b) == len(up_n), (k, len(up_b), len(up_n))
    if len(up_b) == 0:
        assert float(np.max(np.abs(v - ref.v_mV[k]))) < 0.1, k
    else:
        assert float(np.max(np.abs(up_b - up_n))) < SPIKE_TOL_MS, (k, up_b[:3], up_n[:3])
    return len(up_b)


def test_persistent_sodium_amplifies_near_threshold_and_matches_neuron():
    """Magistretti & Alonso (1999) I_NaP: an inward current that turns on below threshold, so with it the cell
    rests higher, a depolarising step moves it further than the same hyperpolarising step (without it the
    fast-spiking preset is near-symmetric) and a suprathreshold step gives more spikes; Brian2 and NEURON agree on
    the subthreshold traces within 0.1 mV and on every spike within SPIKE_TOL_MS."""
    names = HH.param_names()
    base = HH.preset_values("fast_spiking")
    amps = np.array([-30.0, 30.0, -30.0, 30.0, 250.0, 250.0])
    g = (0.0, 0.0, 0.01, 0.01, 0.0, 0.01)  # 0.01 mS/cm2: m_inf 0.07 at rest, ~2 mV; at 0.03 the cell fires alone
    rows = np.array([[{**base, "g_NaP": gk}[k] for k in names] for gk in g])
    brian = simulate(HH, rows, steps_matrix(amps, START_MS, STEP_MS, TOTAL_MS, STIM_DT_MS), stim_dt_ms=STIM_DT_MS,
                     duration_ms=TOTAL_MS, dt_ms=DT_MS, record_dt_ms=0.1)
    ref = simulate_neuron(rows, amps, START_MS, STEP_MS, TOTAL_MS, dt_ms=REF_DT_MS, record_dt_ms=0.1, secondorder=2)
    a, b = int(round(START_MS / 0.1)), int(round((START_MS + STEP_MS) / 0.1))
    rest, defl, counts = [], [], []
    for k in range(6):
        v = brian.v_mV[k].astype(float)
        n = _agree_with_neuron(brian, ref, k)
        if n == 0:
            rest.append(float(v[a - 1]))
            defl.append(float(np.mean(v[b - 200:b])) - float(v[a - 1]))
        else:
            counts.append(n)
    assert rest[2] > rest[0] + 1.0, rest  # I_NaP's window current depolarises rest
    assert abs(defl[1] / defl[0]) < 1.2, defl  # without: near-symmetric
    assert abs(defl[3] / defl[2]) > abs(defl[1] / defl[0]) + 0.15, defl  # with: depolarising steps amplified
    assert counts[1] >= counts[0] + 2, counts


def test_slow_ahp_holds_the_cell_down_after_spikes_only_and_matches_neuron():
    """The spike-activated slow K+ current (I_AHP): a subthreshold step's response is unchanged (its activation is
    ~0 below threshold), a suprathreshold step fires fewer APs with longer ISIs late in the train, and after the
    step the cell sits below its rest for hundreds of ms (the slow AHP); Brian2 and NEURON agree on the
    subthreshold traces within 0.1 mV and on every spike within SPIKE_TOL_MS."""
    names = HH.param_names()
    base = HH.preset_values("regular_spiking")
    amps = np.array([-30.0, 30.0, -30.0, 30.0, 250.0, 250.0])
    g = (0.0, 0.0, 0.2, 0.2, 0.0, 0.2)
    rows = np.array([[{**base, "g_AHP": gk, "tau_AHP": 500.0}[k] for k in names] for gk in g])
    brian = simulate(HH, rows, steps_matrix(amps, START_MS, STEP_MS, TOTAL_MS, STIM_DT_MS), stim_dt_ms=STIM_DT_MS,
                     duration_ms=TOTAL_MS, dt_ms=DT_MS, record_dt_ms=0.1)
    ref = simulate_neuron(rows, amps, START_MS, STEP_MS, TOTAL_MS, dt_ms=REF_DT_MS, record_dt_ms=0.1, secondorder=2)
    counts = [n for n in (_agree_with_neuron(brian, ref, k) for k in range(6)) if n > 0]
    for off, on in ((0, 2), (1, 3)):  # below threshold it is not there
        assert float(np.max(np.abs(brian.v_mV[off] - brian.v_mV[on]))) < 0.01
    assert counts[1] < counts[0] - 2, counts
    after = int(round((START_MS + STEP_MS + 50.0) / 0.1))  # 50 ms after the step: deeper than I_M's AHP alone
    assert float(brian.v_mV[5][after]) < float(brian.v_mV[4][after]) - 2.0, (brian.v_mV[5][after], brian.v_mV[4][after])


# A fast-spiking cell short of Na+ channels (g_Na 20 of the preset's 58: its AP peak follows their number) with most
# of them able to enter slow inactivation, 10x faster than Fleidervish's rates: its APs shrink by ~5.5 mV over a 300 ms
# train at 300 pA (0.0 without; at the preset's g_Na -1.9 mV)
NAS_G_NA, NAS_F, NAS_PHI = 20.0, 0.8, 10.0


def test_slow_sodium_inactivation_shrinks_aps_over_a_train_and_matches_neuron():
    """I_Na's slow inactivation (Fleidervish et al. 1996): the Na+ channels lost to it build up over a train, so its
    APs shrink, while a subthreshold step (s_Na near 1 below -60 mV) is unchanged within 0.5 mV; Brian2 and NEURON
    agree on the subthreshold traces within 0.1 mV and on every spike within SPIKE_TOL_MS."""
    from scipy.signal import find_peaks

    names = HH.param_names()
    base = HH.preset_values("fast_spiking", {"g_Na": NAS_G_NA})
    amps = np.array([-30.0, -30.0, 300.0, 300.0])
    f = (0.0, NAS_F, 0.0, NAS_F)
    rows = np.array([[{**base, "f_NaS": fk, "phi_NaS": NAS_PHI}[k] for k in names] for fk in f])
    brian = simulate(HH, rows, steps_matrix(amps, START_MS, STEP_MS, TOTAL_MS, STIM_DT_MS), stim_dt_ms=STIM_DT_MS,
                     duration_ms=TOTAL_MS, dt_ms=DT_MS, record_dt_ms=0.1)
    ref = simulate_neuron(rows, amps, START_MS, STEP_MS, TOTAL_MS, dt_ms=REF_DT_MS, record_dt_ms=0.1, secondorder=2)
    counts = [_agree_with_neuron(brian, ref, k) for k in range(4)]
    assert float(np.max(np.abs(brian.v_mV[0] - brian.v_mV[1]))) < 0.5
    decline = []
    for k in (2, 3):
        v = brian.v_mV[k].astype(float)
        peaks = v[find_peaks(v, height=-10.0, prominence=20.0)[0]]
        decline.append(float(np.median(peaks[-3:]) - np.median(peaks[:3])))
    assert decline[0] > -1.0 and decline[1] < decline[0] - 4.0, decline
    assert counts[2] > 10 and counts[3] > 10, counts
