"""The trained stimulus domain (noble.operator.domain) and `noble sample`'s refusal outside it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from noble.operator.domain import OutsideTrainedDomain, amplitude_range, check_stimulus_domain, trained_amplitudes


def _cfg(amps: list[float]) -> SimpleNamespace:
    return SimpleNamespace(stimulus=SimpleNamespace(amplitudes_pA=amps))


def test_step_amplitudes() -> None:
    cfg = _cfg([390.0, -90.0, 0.0, 150.0, 150.0])
    assert trained_amplitudes(cfg) == [-90.0, 0.0, 150.0, 390.0]
    assert amplitude_range(cfg) == (-90.0, 390.0)
    for amp in (-90.0, 0.0, 17.0, 390.0, 390.0 + 1e-10):
        assert check_stimulus_domain(cfg, amp) == []
    for amp in (390.5, -90.5, 1e4):
        with pytest.raises(OutsideTrainedDomain) as exc:
            check_stimulus_domain(cfg, amp)
        assert exc.value.field == "stimulus.amplitude_pA" and exc.value.range_pA == (-90.0, 390.0)
        assert "[-90, 390] pA" in exc.value.message
        warnings = check_stimulus_domain(cfg, amp, extrapolate=True)
        assert len(warnings) == 1 and "stimulus.amplitude_pA" in warnings[0]


def test_waveform_values() -> None:
    cfg = _cfg([60.0, 120.0])  # every training step starts from 0 pA: the baseline is inside
    wave = np.zeros(100)
    wave[10:50] = 120.0
    assert check_stimulus_domain(cfg, wave) == []
    wave[60] = -5.0
    with pytest.raises(OutsideTrainedDomain) as exc:
        check_stimulus_domain(cfg, wave)
    assert exc.value.field == "stimulus.values_pA" and exc.value.range_pA == (0.0, 120.0)
    assert "values_pA[60] = -5 pA" in exc.value.message
    wave[60] = np.nan
    with pytest.raises(OutsideTrainedDomain):
        check_stimulus_domain(cfg, wave)
    assert len(check_stimulus_domain(cfg, [0.0, 500.0], extrapolate=True)) == 1


def test_no_recorded_amplitudes_has_no_domain() -> None:
    assert amplitude_range(_cfg([])) is None
    assert check_stimulus_domain(_cfg([]), 1e4) == []


def test_cli_sample_refuses_outside_and_extrapolates_on_request(tmp_path) -> None:  # noqa: ANN001
    from noble.cli import app
    from noble.operator import default_surrogate_path

    if not (default_surrogate_path() / "weights.safetensors").is_file():
        pytest.fail("the shipped surrogate noble/assets/hh_fs is missing")
    runner = CliRunner()
    r = runner.invoke(app, ["sample", "--amplitude-pA", "500", "--n", "2"])
    assert r.exit_code == 2, r.output
    assert "--amplitude-pA" in r.output and "[-90, 390] pA" in r.output and "--extrapolate" in r.output
    npz = tmp_path / "x.npz"
    r = runner.invoke(app, ["sample", "--amplitude-pA", "500", "--n", "2", "--extrapolate", "--out", str(npz)])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout[r.stdout.index("{"): r.stdout.rindex("}") + 1])
    assert summary["extrapolated"] is True and "warning" in r.output
    with np.load(npz) as z:
        assert bool(z["extrapolated"])
    r = runner.invoke(app, ["sample", "--amplitude-pA", "200", "--n", "2"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout[r.stdout.index("{"): r.stdout.rindex("}") + 1])["extrapolated"] is False
