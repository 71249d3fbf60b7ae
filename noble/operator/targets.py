"""The held-out targets a shipped surrogate is judged by (the waveform issue's; `noble evaluate`), as a table.

Each target reads one figure of `evaluate.summarise_comparison`'s overall summary (depolarising steps, against
noise-free Brian2) and says whether it is met and by what factor it misses, so a card states by how much a
shipped surrogate falls short instead of a bare pass/fail. Multi-compartment populations get the looser rel L2
bound the issue grants them (every AP of a 100-300 Hz train that drifts by a sample is charged twice).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class WaveformTarget(BaseModel):
    """One figure of the overall summary (`path` of keys) and its bound: `at_most` or `at_least` the value."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    metric: str
    path: tuple[str, ...]
    bound: Literal["at_most", "at_least"]
    target: float
    unit: str = ""


class TargetResult(BaseModel):
    """A target against a surrogate's figure: met, and the factor by which the figure is on the wrong side
    (value / target for an upper bound, target / value for a lower one; <= 1 when met)."""

    model_config = ConfigDict(extra="forbid")
    metric: str
    value: float | None
    target: float
    bound: Literal["at_most", "at_least"]
    unit: str
    met: bool
    ratio: float | None


WAVEFORM_TARGETS: tuple[WaveformTarget, ...] = (
    WaveformTarget(metric="first 5 spike times, median error", path=("first5_spike_time_abs_err_ms", "median"),
                   bound="at_most", target=1.0, unit="ms"),
    WaveformTarget(metric="spike count within +-1", path=("frac_spike_count_within_1",), bound="at_least",
                   target=0.95, unit="fraction of steps"),
    WaveformTarget(metric="F-I MAE", path=("fi_mae_Hz",), bound="at_most", target=1.0, unit="Hz"),
    WaveformTarget(metric="voltage rel L2, median", path=("rel_l2", "median"), bound="at_most", target=0.10),
    WaveformTarget(metric="matched-AP peak error, median", path=("ap_peak_abs_err_mV", "median"), bound="at_most",
                   target=3.0, unit="mV"),
    WaveformTarget(metric="matched-AP half-width error, median", path=("ap_half_width_rel_err", "median"),
                   bound="at_most", target=0.15, unit="relative"),
    WaveformTarget(metric="matched-AP AHP trough error, median", path=("ahp_trough_abs_err_mV", "median"),
                   bound="at_most", target=3.0, unit="mV"),
    WaveformTarget(metric="AP peak spread within a trace, median", path=("ap_peak_spread_mV", "surrogate", "median"),
                   bound="at_most", target=5.0, unit="mV"),
)

MULTI_COMPARTMENT_REL_L2 = 0.15  # the bound for hh_mc populations


def targets_for(family: str | None) -> tuple[WaveformTarget, ...]:
    """The table for a model family: hh_mc's rel L2 bound is MULTI_COMPARTMENT_REL_L2."""
    if family != "hh_mc":
        return WAVEFORM_TARGETS
    return tuple(t.model_copy(update={"target": MULTI_COMPARTMENT_REL_L2}) if t.path == ("rel_l2", "median") else t
                 for t in WAVEFORM_TARGETS)


def _lookup(summary: dict[str, Any], path: tuple[str, ...]) -> float | None:
    node: Any = summary
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    try:
        value = float(node)
    except (TypeError, ValueError):
        return None
    return value if value == value else None


def judge(summary: dict[str, Any], family: str | None) -> list[TargetResult]:
    """Every target of `family` against an overall noise-free summary; a figure the summary lacks (no spikes,
    no matched AP) is not met, with value and ratio None."""
    out = []
    for t in targets_for(family):
        v = _lookup(summary, t.path)
        if v is None:
            out.append(TargetResult(metric=t.metric, value=None, target=t.target, bound=t.bound, unit=t.unit,
                                    met=False, ratio=None))
            continue
        if t.bound == "at_most":
            met, ratio = v <= t.target, v / t.target
        else:
            met, ratio = v >= t.target, (t.target / v if v > 0 else None)
        out.append(TargetResult(metric=t.metric, value=v, target=t.target, bound=t.bound, unit=t.unit, met=met,
                                ratio=ratio))
    return out


def format_results(results: list[TargetResult]) -> str:
    """One line per target: 'met' or 'MISSED (x1.21)'."""
    lines = []
    for r in results:
        sign = "<=" if r.bound == "at_most" else ">="
        value = "-" if r.value is None else f"{r.value:.3g}"
        verdict = "met" if r.met else ("MISSED" + (f" (x{r.ratio:.2f})" if r.ratio is not None else ""))
        lines.append(f"  {r.metric:<40} {value:>8} {sign} {r.target:g} {r.unit:<18} {verdict}")
    return "\n".join(lines)
