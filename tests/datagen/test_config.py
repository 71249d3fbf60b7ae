"""Every kind of config mistake is refused before any simulation, with the field named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from noble.cli import app
from noble.datagen.config import load_config, parse_config

BASE = {"family": "lif", "n_models": 4, "protocol": {"kind": "fi_sweep", "amplitudes_pA": [100, 200]},
        "duration_ms": 1300}


def _with(**over: object) -> dict:
    cfg = json.loads(json.dumps(BASE))
    cfg.update(over)
    return cfg


def _error(raw: dict) -> str:
    with pytest.raises(ValueError) as info:
        parse_config(raw)
    return str(info.value)


def test_valid_config_parses() -> None:
    cfg = parse_config(_with())
    assert cfg.n_shards == 1 and len(cfg.stimuli()) == 2


def test_unknown_family_names_allowed_values() -> None:
    msg = _error(_with(family="izhikevich"))
    assert "family" in msg and "'hh'" in msg and "'lif'" in msg


def test_unknown_preset_names_allowed_values() -> None:
    msg = _error(_with(family="hh", preset="chattering"))
    assert "preset" in msg and "fast_spiking" in msg


@pytest.mark.parametrize("dt", [0, -0.025])
def test_non_positive_dt(dt: float) -> None:
    msg = _error(_with(dt_ms=dt))
    assert "dt_ms" in msg and "greater than 0" in msg


def test_amplitude_not_a_number() -> None:
    msg = _error(_with(protocol={"kind": "fi_sweep", "amplitudes_pA": [100, "lots"]}))
    assert "amplitudes_pA" in msg and "valid number" in msg


def test_duration_over_configured_maximum(monkeypatch: pytest.MonkeyPatch) -> None:
    from noble.config import settings

    monkeypatch.setenv("NOBLE_MAX_DURATION_MS", "2000")
    settings.cache_clear()
    try:
        msg = _error(_with(duration_ms=5000))
    finally:
        settings.cache_clear()
    assert "duration_ms" in msg and "2000" in msg


def test_parameter_outside_its_range() -> None:
    msg = _error(_with(family="hh", overrides={"g_Na": 5000}))
    assert "g_Na" in msg and "[1.0, 200.0]" in msg


def test_unknown_parameter_name() -> None:
    msg = _error(_with(overrides={"g_XYZ": 1.0}))
    assert "g_XYZ" in msg and "tau_m" in msg


def test_cli_refuses_bad_config_and_touches_nothing(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    sentinel = out / "shard-00000.h5"
    sentinel.write_bytes(b"finished work")
    bad = tmp_path / "bad.yaml"
    bad.write_text("family: lif\nn_models: 2\ndt_ms: -1\nprotocol: {kind: fi_sweep, amplitudes_pA: [100]}\n")
    result = CliRunner().invoke(app, ["datagen", "run", str(bad), "--out", str(out), "-q"])
    assert result.exit_code == 2
    assert "dt_ms" in result.output
    assert sentinel.read_bytes() == b"finished work"
    assert sorted(p.name for p in out.iterdir()) == ["shard-00000.h5"]


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("family: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(bad)
