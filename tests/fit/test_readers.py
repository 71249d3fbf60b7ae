"""Readers and exchange formats: the real ABF recordings, NWB in/out (incl. Allen-style long squares),
CSV/NPZ, validation of units and sampling, and bad files that must give RecordingError."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from noble.io import (Recording, RecordingError, Sweep, detect_step, is_long_square, read_nwb, read_recording,
                      write_csv, write_npz, write_nwb)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real recordings folder {DATA} is absent "
                                                           "(expected at <project root>/../shared/data)")
RS, FSI, ACTIVE = "171116sh_0018.abf", "2019_07_24_0055_fsi.abf", "17o05028_ic_steps.abf"

# Protocol facts from the files' epoch tables (see README.md in the data folder). 17o05028: the protocol
# ('steps dual -50 to 150 step 10') planned 21 sweeps, 16 were recorded, so the steps end at +100 pA.
EXPECTED = {
    RS: dict(amps=np.arange(-100, 301, 25), fixed=-100.0, planned=17),
    FSI: dict(amps=np.arange(-100, 301, 25), fixed=-100.0, planned=17),
    ACTIVE: dict(amps=np.arange(-50, 101, 10), fixed=-50.0, planned=21),
}


@pytest.fixture(scope="module")
def recordings() -> dict[str, Recording]:
    if not DATA.is_dir():
        pytest.skip(f"real recordings folder {DATA} is absent")
    return {name: read_recording(DATA / name) for name in EXPECTED}


# ---------------------------------------------------------------------------------------------- real ABF
@needs_data
@pytest.mark.parametrize("name", list(EXPECTED))
def test_real_abf_reads_with_protocol_from_epoch_table(recordings: dict[str, Recording], name: str) -> None:
    rec = recordings[name]
    exp = EXPECTED[name]
    assert rec.format == "abf" and rec.sampling_rate_Hz == 20_000.0
    np.testing.assert_array_equal(rec.amplitudes_pA, exp["amps"])
    assert rec.metadata["episodes_planned"] == exp["planned"]
    for s in rec.sweeps:
        assert s.n_samples == 60_000 and s.duration_ms == pytest.approx(3000.0)
        # 0.5 s test step from 0.147 s (after pyABF's 1/64-sweep pre-epoch): 2937 samples at 20 kHz
        assert s.stim_start_ms == pytest.approx(146.85) and s.stim_end_ms == pytest.approx(646.85)
        a, b = int(round(s.stim_start_ms / s.dt_ms)), int(round(s.stim_end_ms / s.dt_ms))
        assert np.all(s.i_pA[a:b] == s.stim_amplitude_pA) and np.all(s.i_pA[:a] == 0.0)
        # the fixed hyperpolarising step later in the sweep is metadata, never the stimulus
        fixed = [e for e in s.metadata["secondary_steps"] if e["start_ms"] == pytest.approx(1146.85)]
        assert len(fixed) == 1 and fixed[0]["level_pA"] == exp["fixed"]
        assert fixed[0]["end_ms"] == pytest.approx(1646.85)
        assert np.all(np.abs(s.v_mV) < 200.0)
    assert rec.sweeps[0].v_mV.mean() < rec.sweeps[-1].v_mV[2937:12937].mean()  # -100 pA vs +max: V goes up


# -------------------------------------------------------------------------------------------- validation
def _v(n: int = 2000) -> np.ndarray:
    return -65.0 + np.sin(np.arange(n) / 50.0)


def test_sweep_accepts_plain_step_and_renders_command() -> None:
    s = Sweep(v_mV=_v(), dt_ms=0.05, stim_amplitude_pA=100.0, stim_start_ms=10.0, stim_end_ms=60.0)
    c = s.command_pA()
    assert s.sampling_rate_Hz == 20_000.0 and c[int(10 / 0.05)] == 100.0 and c[int(60 / 0.05)] == 0.0
    t = np.arange(2000) * 0.05 + 5.0
    s2 = Sweep(v_mV=_v(), t_ms=t, stim_amplitude_pA=0.0, stim_start_ms=10.0, stim_end_ms=60.0)
    assert s2.dt_ms == pytest.approx(0.05) and s2.t0_ms == 5.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(v_mV=_v() / 1000.0), "volts"),
    (dict(stim_amplitude_pA=0.1), "nA"),
    (dict(dt_ms=0.5), "sampling rate"),
    (dict(v_mV=np.where(np.arange(2000) == 7, np.nan, _v())), "NaN"),
    (dict(stim_end_ms=10.0), "no stimulus step"),
    (dict(stim_end_ms=500.0), "outside the trace"),
    (dict(i_pA=np.zeros(2000)), "command current"),
    (dict(v_mV=_v() * 1000.0), "microvolts"),
    (dict(t_ms=np.cumsum(np.r_[0.05, np.full(999, 0.05), np.full(1000, 0.1)]), dt_ms=None), "uniform"),
])
def test_sweep_validation_names_the_problem(kwargs: dict, message: str) -> None:
    base = dict(v_mV=_v(), dt_ms=0.05, stim_amplitude_pA=100.0, stim_start_ms=10.0, stim_end_ms=60.0)
    base.update(kwargs)
    with pytest.raises(RecordingError, match=message):
        Sweep(**base)


def test_recording_needs_a_stimulus() -> None:
    s = Sweep(v_mV=_v(), dt_ms=0.05, stim_amplitude_pA=0.0, stim_start_ms=10.0, stim_end_ms=60.0)
    with pytest.raises(RecordingError, match="no sweep has a stimulus step"):
        Recording([s])
    with pytest.raises(RecordingError, match="no current-clamp sweeps"):
        Recording([])


def test_detect_step_prefers_long_square_over_test_pulse() -> None:
    dt = 0.05
    i = np.zeros(60_000)
    i[400:600] = -50.0  # 10 ms test pulse
    i[20_000:40_000] = 130.0  # 1 s long square
    step = detect_step(i, dt)
    assert step is not None and step.amplitude_pA == 130.0
    assert (step.start_ms, step.end_ms) == (1000.0, 2000.0)
    ramp = np.linspace(0, 200, 60_000)
    assert detect_step(ramp, dt) is None


# ---------------------------------------------------------------------------------------- NWB in / out
def test_nwb_round_trip_real_sweeps(recordings: dict[str, Recording], tmp_path: Path) -> None:
    rec = recordings[RS]
    sub = Recording(rec.sweeps[4:8], source=rec.source, format="abf", cell=rec.cell, metadata=rec.metadata)
    out = write_nwb(tmp_path / "rs.nwb", sub)
    assert [p.name for p in tmp_path.iterdir()] == ["rs.nwb"]  # no temp files left behind
    back = read_recording(out)
    assert back.format == "nwb" and back.cell == rec.cell and len(back) == 4
    assert back.metadata["protocol"] == rec.metadata["protocol"]
    for a, b in zip(sub.sweeps, back.sweeps):
        np.testing.assert_array_equal(a.v_mV, b.v_mV)
        np.testing.assert_array_equal(a.i_pA, b.i_pA)
        assert (a.dt_ms, a.stim_start_ms, a.stim_end_ms, a.stim_amplitude_pA, a.index) == \
            (b.dt_ms, b.stim_start_ms, b.stim_end_ms, b.stim_amplitude_pA, b.index)


def test_nwb_export_of_simulated_traces_is_atomic_and_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    amps = [-50.0, 0.0, 75.0]
    sweeps = [Sweep(v_mV=(-70 + rng.normal(0, 1, 5000)).astype(np.float32), dt_ms=0.1, stim_amplitude_pA=a,
                    stim_start_ms=100.0, stim_end_ms=400.0, index=k) for k, a in enumerate(amps)]
    path = tmp_path / "sim.nwb"
    path.write_bytes(b"old content")
    write_nwb(path, sweeps, cell="sim-1")
    back = read_recording(path)
    np.testing.assert_array_equal(back.amplitudes_pA, amps)
    for a, b in zip(sweeps, back.sweeps):
        np.testing.assert_array_equal(a.v_mV, b.v_mV)
        np.testing.assert_array_equal(a.command_pA(), b.i_pA)
    # a failing write leaves the existing file untouched and no temporaries
    before = path.read_bytes()
    with pytest.raises(RecordingError):
        write_nwb(path, [object()])  # type: ignore[list-item]
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["sim.nwb"]


def _allen_like_nwb(path: Path) -> list[float]:
    """An NWB laid out like Allen Cell Types / MIES files: SI units, data_XXXXX_AD0 / _DA0 pairs matched by
    sweep_number, no icephys table; long squares with a test pulse, plus a ramp and a short square."""
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries

    nwb = NWBFile(session_description="allen-like", identifier="cell-42",
                  session_start_time=datetime(2020, 1, 1, tzinfo=timezone.utc))
    dev = nwb.create_device(name="MIES")
    el = nwb.create_icephys_electrode(name="e0", description="", device=dev)
    rate, T = 20_000.0, 50_000
    t = np.arange(T) / rate
    pulse = (t >= 0.02) & (t < 0.03)
    long_on = (t >= 1.02) & (t < 2.02)
    amps = [-110.0, -30.0, 50.0, 130.0]
    stims = [("C1LSCOARSE150216_DA_0", a, a * long_on - 20.0 * pulse) for a in amps]
    stims.append(("C1RP25PR1S141203_DA_0", 0.0, np.where(t > 0.5, (t - 0.5) * 25.0, 0.0)))
    stims.append(("C1SSFINEST150112_DA_0", 400.0, 400.0 * ((t >= 1.02) & (t < 1.023)) - 20.0 * pulse))
    for k, (desc, _a, i_pA) in enumerate(stims):
        v_V = (-0.070 + 0.1e-3 * np.convolve(i_pA, np.exp(-np.arange(400) / 200.0) / 200.0)[:T]) \
            .astype(np.float32)
        nwb.add_acquisition(CurrentClampSeries(
            name=f"data_{k:05d}_AD0", data=v_V, unit="volts", conversion=1.0, electrode=el, gain=1.0,
            rate=rate, starting_time=10.0 * k, sweep_number=np.uint32(k), stimulus_description=desc))
        nwb.add_stimulus(CurrentClampStimulusSeries(
            name=f"data_{k:05d}_DA0", data=(i_pA * 1e-12), unit="amperes", conversion=1.0, electrode=el,
            gain=1.0, rate=rate, starting_time=10.0 * k, sweep_number=np.uint32(k), stimulus_description=desc))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return amps


def test_nwb_reads_allen_style_long_squares(tmp_path: Path) -> None:
    path = tmp_path / "allen.nwb"
    amps = _allen_like_nwb(path)
    assert is_long_square("C1LSCOARSE150216_DA_0") and is_long_square("Long Square")
    assert not is_long_square("C1SSFINEST150112_DA_0") and not is_long_square("C1RP25PR1S141203_DA_0")
    rec = read_recording(path)
    np.testing.assert_allclose(rec.amplitudes_pA, amps, atol=1e-6)
    for s in rec.sweeps:
        assert s.stim_start_ms == pytest.approx(1020.0) and s.stim_end_ms == pytest.approx(2020.0)
        assert s.sampling_rate_Hz == pytest.approx(20_000.0)
        assert abs(float(np.median(s.v_mV[:200])) + 70.0) < 0.5  # volts -> mV
    assert rec.sweeps[1].t0_ms == pytest.approx(10_000.0)
    with pytest.warns(UserWarning, match="skipped 1 sweep"):
        every = read_nwb(path, stimulus="all")
    assert len(every) == 5  # 4 long squares + the short square; the ramp is not a step
    assert [d["name"] for d in every.metadata["skipped_sweeps"]] == ["data_00004_AD0"]
    short = every.sweeps[-1]
    assert short.stim_amplitude_pA == pytest.approx(400.0) and short.stim_duration_ms == pytest.approx(3.0)


# ------------------------------------------------------------------------------------------- CSV / NPZ
def test_csv_and_npz_round_trip_find_the_test_step(recordings: dict[str, Recording], tmp_path: Path) -> None:
    rec = recordings[RS]
    # -100 pA (same level as the fixed step), 0 pA (only the fixed step) and +25 pA sweeps
    sub = Recording([rec.sweeps[k] for k in (0, 4, 5)], source=rec.source)
    for path, write in ((tmp_path / "r.csv", write_csv), (tmp_path / "r.npz", write_npz)):
        write(path, sub)
        back = read_recording(path)
        np.testing.assert_array_equal(back.amplitudes_pA, [-100.0, 0.0, 25.0])
        for a, b in zip(sub.sweeps, back.sweeps):
            assert b.stim_start_ms == pytest.approx(a.stim_start_ms) and b.stim_end_ms == pytest.approx(a.stim_end_ms)
            np.testing.assert_allclose(b.v_mV, a.v_mV, atol=1e-6)
            assert b.dt_ms == pytest.approx(a.dt_ms)
    # time in seconds, no sweep column: one sweep
    s = rec.sweeps[10]
    path = tmp_path / "one.csv"
    path.write_text("time_s,voltage_mV,current_pA\n" + "\n".join(
        f"{t / 1000:.8f},{v:.4f},{i:.1f}" for t, v, i in zip(s.time_ms, s.v_mV, s.i_pA)))
    one = read_recording(path)
    assert len(one) == 1 and one.sampling_rate_Hz == pytest.approx(20_000.0)
    assert one.amplitudes_pA[0] == s.stim_amplitude_pA and one.sweeps[0].stim_start_ms == pytest.approx(146.85)


# ------------------------------------------------------------------------------------------- bad files
def _write_vc_only_nwb(path: Path) -> None:
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.icephys import VoltageClampSeries

    nwb = NWBFile(session_description="vc", identifier="vc", session_start_time=datetime.now(timezone.utc))
    el = nwb.create_icephys_electrode(name="e0", description="", device=nwb.create_device(name="d"))
    nwb.add_acquisition(VoltageClampSeries(name="vc0", data=np.zeros(1000), electrode=el, gain=1.0, rate=20000.0,
                                           starting_time=0.0))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    rng = np.random.default_rng(1)
    out: dict[str, tuple[Path, str]] = {}
    p = tmp / "random.abf"
    p.write_bytes(rng.bytes(5000))
    out["random bytes .abf"] = (p, "not a valid ABF")
    p = tmp / "random.nwb"
    p.write_bytes(rng.bytes(5000))
    out["random bytes .nwb"] = (p, "not a valid NWB")
    p = tmp / "empty.csv"
    p.write_bytes(b"")
    out["empty"] = (p, "empty")
    p = tmp / "nocurrent.csv"
    p.write_text("time_ms,voltage_mV\n" + "\n".join(f"{k * 0.05},{-65.0}" for k in range(100)))
    out["csv missing column"] = (p, "missing column.*current_pA")
    p = tmp / "volts.csv"
    p.write_text("time_ms,voltage_V,current_pA\n" + "\n".join(f"{k * 0.05},-0.065,0" for k in range(100)))
    out["csv in volts"] = (p, "unsupported units")
    vc = tmp / "vc.nwb"
    _write_vc_only_nwb(vc)
    out["nwb without current clamp"] = (vc, "no CurrentClampSeries")
    p = tmp / "vc_named.abf"
    p.write_bytes(vc.read_bytes())
    out["nwb named .abf"] = (p, "looks like NWB")
    import h5py

    p = tmp / "plain.h5"
    with h5py.File(p, "w") as f:
        f["x"] = np.arange(3)
    out["hdf5 that is not nwb"] = (p, "unreadable NWB")
    p = tmp / "bad.npz"
    np.savez(p, v_mV=np.zeros((1, 10)))
    out["npz missing arrays"] = (p, "missing array")
    if DATA.is_dir():
        full = (DATA / RS).read_bytes()
        for cut in (100, 1_000_000):
            p = tmp / f"trunc_{cut}.abf"
            p.write_bytes(full[:cut])
            out[f"abf truncated to {cut} bytes"] = (p, "truncated")
    return out


def test_bad_files_raise_recording_error_naming_file(tmp_path: Path) -> None:
    cases = _bad_files(tmp_path)
    assert len(cases) >= 9
    for what, (path, message) in cases.items():
        with pytest.raises(RecordingError, match=message) as err:
            read_recording(path)
        assert path.name in str(err.value), what
    with pytest.raises(RecordingError, match="no such file"):
        read_recording(tmp_path / "missing.abf")
    assert not os.path.exists(tmp_path / "missing.abf")
