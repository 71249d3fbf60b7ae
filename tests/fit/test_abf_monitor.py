"""ABF files whose DAC waveform pyabf cannot give (a stimulus file not beside the ABF, as on Allen Institute
rigs: NaN command; or a DAC that carried no step): the recorded current channel is the command, and a file
with neither is refused with the reason. pyabf cannot write a two-channel ABF2, so the reader is driven through
an object with pyabf's interface, its header values those of a real Allen file (pyABF's
H19_29_150_11_21_01_0011.abf: IN 0 mV, IN 4 pA, 50 kHz, DAC file C1NSD1SHORT.atf, an unplayed epoch table)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import noble.io.abf as abf_mod
from noble.io import RecordingError, read_recording

DT_MS = 0.02
N = int(round(1500 / DT_MS))
AMPS_PA = [-50.0, 0.0, 150.0]
START_MS, END_MS = 300.0, 1300.0  # what the stimulus file played (the epoch table says 203..303 ms)


class FakeAllenAbf:
    """pyabf.ABF's interface over two recorded channels (membrane potential, current monitor)."""

    def __init__(self, command: str = "nan", with_monitor: bool = True, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        t = np.arange(N) * DT_MS
        on = (t >= START_MS) & (t < END_MS)
        self.adcUnits = ["mV", "pA"] if with_monitor else ["mV"]
        self.adcNames = ["IN 0", "IN 4"] if with_monitor else ["IN 0"]
        self.dacUnits, self.channelCount = ["pA", "mV"], len(self.adcUnits)
        self.sampleRate, self.sweepList = 1000.0 / DT_MS, list(range(len(AMPS_PA)))
        self.abfID, self.abfVersionString, self.protocol, self.abfDateTime = "H19_fake", "2.6.0.0", "C1NSD1SHORT", ""
        self.tagComments: list[str] = []
        self._stringsIndexed = SimpleNamespace(lDACFilePath=["C:\\Allen Institute\\eCode\\C1NSD1SHORT.atf"])
        self._v = [-68.0 + 0.1 * a * on + 0.2 * rng.standard_normal(N) for a in AMPS_PA]
        # the monitor: the played current, 3 pA of noise and a 2 pA offset
        self._i = [-2.0 + a * on + 3.0 * rng.standard_normal(N) for a in AMPS_PA]
        self._command = command
        self._sweep, self._channel = 0, 0

    def setSweep(self, sweep: int, channel: int = 0) -> None:
        self._sweep, self._channel = sweep, channel

    @property
    def sweepY(self) -> np.ndarray:
        return (self._v if self._channel == 0 else self._i)[self._sweep]

    @property
    def sweepC(self) -> np.ndarray:
        return np.full(N, np.nan) if self._command == "nan" else np.zeros(N)

    @property
    def sweepEpochs(self) -> Any:  # pyabf still reports the epoch table the stimulus file overrode
        level = 112.0 - 20.0 * self._sweep
        return SimpleNamespace(types=["Step", "Step", "Step"], levels=[0.0, level, 0.0],
                               p1s=[0, 10156, 15156], p2s=[10156, 15156, N])


def _read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: FakeAllenAbf):
    path = tmp_path / "H19_fake.abf"
    path.write_bytes(b"ABF2" + b"\0" * 64)
    monkeypatch.setattr(abf_mod, "_open", lambda _p: fake)
    return read_recording(path)


@pytest.mark.parametrize("command", ["nan", "flat"])
def test_the_current_monitor_is_the_command_where_the_dac_waveform_is_not_available(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: str) -> None:
    rec = _read(monkeypatch, tmp_path, FakeAllenAbf(command))
    assert "recorded current channel 1" in rec.metadata["command_source"]
    if command == "nan":
        assert "C1NSD1SHORT.atf" in rec.metadata["command_source"]
    amps = [s.stim_amplitude_pA for s in rec.sweeps]
    assert len(rec.sweeps) == 3 and rec.sweeps[1].metadata["window_from_other_sweeps"]  # 0 pA: the shared window
    np.testing.assert_allclose(amps, AMPS_PA, atol=1.0)
    for s in rec.sweeps:  # the played window, not the epoch table's 203..303 ms
        assert abs(s.stim_start_ms - START_MS) < 0.5 and abs(s.stim_end_ms - END_MS) < 0.5
        assert np.all(np.isfinite(s.i_pA))
        on = s.i_pA[int(400 / DT_MS):int(1200 / DT_MS)]
        assert np.std(on) < 0.5  # the monitor's 3 pA noise off
        hold = s.metadata["holding_pA"]
        assert abs(hold + 2.0) < 1.0 and abs(np.median(on) - hold - s.stim_amplitude_pA) < 0.5


def test_no_stimulus_file_and_no_current_channel_is_refused_naming_the_file(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match=r"C1NSD1SHORT\.atf.*no current channel"):
        _read(monkeypatch, tmp_path, FakeAllenAbf("nan", with_monitor=False))
