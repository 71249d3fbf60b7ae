"""The held-out target table (noble/operator/targets.py): bounds, the miss factor, hh_mc's looser rel L2, a figure
the summary lacks; and every shipped card's table is the one its own noise-free figures give (not stale)."""

from __future__ import annotations

import json

import pytest

from noble.operator import shipped_surrogate_paths
from noble.operator.targets import WAVEFORM_TARGETS, judge, targets_for


def _summary(**over: float) -> dict:
    s = {"first5_spike_time_abs_err_ms": {"median": 0.8}, "frac_spike_count_within_1": 0.97, "fi_mae_Hz": 0.2,
         "rel_l2": {"median": 0.09}, "ap_peak_abs_err_mV": {"median": 1.0}, "ap_half_width_rel_err": {"median": 0.05},
         "ahp_trough_abs_err_mV": {"median": 1.0}, "ap_peak_spread_mV": {"surrogate": {"median": 0.5}}}
    for key, value in over.items():
        if isinstance(s[key], dict):
            s[key] = {"median": value} if "median" in s[key] else s[key]
        else:
            s[key] = value
    return s


def test_every_target_met_by_a_summary_inside_every_bound() -> None:
    results = judge(_summary(), "hh")
    assert len(results) == len(WAVEFORM_TARGETS) and all(r.met for r in results)
    assert all(r.ratio is not None and r.ratio <= 1.0 for r in results)


def test_a_miss_says_by_what_factor_on_either_kind_of_bound() -> None:
    by = {r.metric: r for r in judge(_summary(first5_spike_time_abs_err_ms=1.21, frac_spike_count_within_1=0.76),
                                     "hh")}
    late = by["first 5 spike times, median error"]
    assert not late.met and late.ratio == pytest.approx(1.21)  # value / bound for an upper bound
    few = by["spike count within +-1"]
    assert not few.met and few.ratio == pytest.approx(0.95 / 0.76)  # bound / value for a lower bound
    assert sum(not r.met for r in by.values()) == 2


def test_multi_compartment_rel_l2_bound_is_looser() -> None:
    rel = {t.path: t.target for t in targets_for("hh_mc")}[("rel_l2", "median")]
    assert rel == 0.15 and {t.path: t.target for t in targets_for("hh")}[("rel_l2", "median")] == 0.10
    s = _summary(rel_l2=0.12)
    assert not next(r for r in judge(s, "hh") if r.metric.startswith("voltage")).met
    assert next(r for r in judge(s, "hh_mc") if r.metric.startswith("voltage")).met


def test_a_missing_figure_is_not_met() -> None:
    s = _summary()
    del s["ap_peak_abs_err_mV"]
    s["fi_mae_Hz"] = float("nan")
    by = {r.metric: r for r in judge(s, "hh")}
    for m in ("matched-AP peak error, median", "F-I MAE"):
        assert not by[m].met and by[m].value is None and by[m].ratio is None


@pytest.mark.parametrize("name", sorted(shipped_surrogate_paths()))
def test_shipped_cards_state_their_targets_from_their_own_figures(name: str) -> None:
    path = shipped_surrogate_paths()[name]
    card = json.loads((path / "card.json").read_text())
    family = json.loads((path / "config.json").read_text())["family"]
    nf = card["metrics_heldout_noisefree"]
    assert nf["waveform_targets"] == [r.model_dump() for r in judge(nf, family)]
    assert nf["meets"] == {r["metric"]: r["met"] for r in nf["waveform_targets"]}
