"""The one interface every model family implements (parameter space, presets, Brian2 group builder)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import brian2 as b2
import numpy as np
from pydantic import BaseModel, ConfigDict


class ParamSpec(BaseModel):
    """One model parameter: name, unit (Brian2 unit string), default, plausible range, how it varies."""

    model_config = ConfigDict(frozen=True)

    name: str
    unit: str
    default: float
    low: float
    high: float
    description: str = ""
    # How cell-to-cell variability perturbs it: "lognormal" (conductances, time constants),
    # "normal" (potentials, in the parameter's own unit) or "fixed".
    variability: str = "fixed"


@dataclass
class BuiltGroup:
    """A Brian2 group for n neurons plus the objects that must be added to the same Network."""

    group: b2.NeuronGroup
    extra: list[Any] = field(default_factory=list)
    # Name of the voltage variable and the spike-detection threshold used for the SpikeMonitor.
    v_name: str = "v"


class ModelFamily(ABC):
    """A neuron model family: parameters with units, named presets and a vectorised Brian2 builder."""

    name: ClassVar[str]
    description: ClassVar[str]
    params: ClassVar[tuple[ParamSpec, ...]]
    presets: ClassVar[dict[str, dict[str, float]]]
    default_preset: ClassVar[str]
    # Integration method for Brian2 ("exponential_euler" for HH gating, "exact"/"euler" for LIF).
    method: ClassVar[str] = "euler"
    # > 0: the family starts each neuron at the steady state of the stimulus' first value (`steady_state`,
    # passed to `build` as `start`), and `simulate` runs the group this long at that current, not recorded,
    # when some neuron has no stable steady state there. 0: `build` sets the start and nothing is settled.
    settle_ms: ClassVar[float] = 0.0

    # ---- parameter space -------------------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        return [p.name for p in cls.params]

    @classmethod
    def param_spec(cls, name: str) -> ParamSpec:
        for p in cls.params:
            if p.name == name:
                return p
        raise KeyError(f"unknown parameter {name!r} for family {cls.name!r}; allowed: {cls.param_names()}")

    @classmethod
    def preset_values(cls, preset: str | None = None, overrides: Mapping[str, float] | None = None) -> dict[str, float]:
        """Defaults updated by a named preset and then by explicit overrides (validated against ranges)."""
        preset = preset or cls.default_preset
        if preset not in cls.presets:
            raise ValueError(f"unknown preset {preset!r} for family {cls.name!r}; allowed: {sorted(cls.presets)}")
        values = {p.name: p.default for p in cls.params}
        values.update(cls.presets[preset])
        for key, val in (overrides or {}).items():
            spec = cls.param_spec(key)
            if not (spec.low <= float(val) <= spec.high):
                raise ValueError(
                    f"parameter {key!r}={val} {spec.unit} outside its range [{spec.low}, {spec.high}] {spec.unit}"
                )
            values[key] = float(val)
        return values

    @classmethod
    def sample_params(
        cls,
        n: int,
        rng: np.random.Generator,
        preset: str | None = None,
        overrides: Mapping[str, float] | None = None,
        cv: float = 0.1,
        sd_potential: float = 2.0,
    ) -> np.ndarray:
        """Draw n parameter vectors around a preset: log-normal (coefficient of variation cv) on
        conductances and time constants, normal (sd in the parameter's unit) on potentials; clipped to
        the parameter ranges. Columns follow `param_names()`."""
        centre = cls.preset_values(preset, overrides)
        out = np.empty((n, len(cls.params)), dtype=np.float64)
        sigma_log = np.sqrt(np.log1p(cv**2))
        for j, spec in enumerate(cls.params):
            mu = centre[spec.name]
            if spec.variability == "lognormal" and cv > 0 and mu > 0:
                col = mu * np.exp(rng.normal(-0.5 * sigma_log**2, sigma_log, size=n))
            elif spec.variability == "normal" and sd_potential > 0:
                col = rng.normal(mu, sd_potential, size=n)
            else:
                col = np.full(n, mu)
            out[:, j] = np.clip(col, spec.low, spec.high)
        return out

    @classmethod
    def check_params(cls, params: np.ndarray) -> None:
        """Raise ValueError naming the parameter if any value is outside its range."""
        params = np.atleast_2d(params)
        if params.shape[1] != len(cls.params):
            raise ValueError(f"expected {len(cls.params)} parameters {cls.param_names()}, got {params.shape[1]}")
        for j, spec in enumerate(cls.params):
            col = params[:, j]
            if not np.all(np.isfinite(col)) or np.any(col < spec.low) or np.any(col > spec.high):
                raise ValueError(
                    f"parameter {spec.name!r} outside its range [{spec.low}, {spec.high}] {spec.unit}"
                )

    # ---- Brian2 ------------------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def equations(cls) -> str:
        """Brian2 equation string. The injected current is `I_stim(t, i)` (a 2-D TimedArray in amp)."""

    @classmethod
    @abstractmethod
    def build(cls, n: int, params: np.ndarray, namespace: dict[str, Any], rng: np.random.Generator) -> BuiltGroup:
        """Build ONE vectorised group of n neurons with per-neuron parameters (rows of `params`)."""

    @classmethod
    def steady_state(cls, params: np.ndarray, holding_pA: np.ndarray | float = 0.0
                     ) -> tuple[dict[str, np.ndarray], np.ndarray]:  # pragma: no cover - families with settle_ms
        """(state, at_rest): per neuron, every state variable at a stable steady state under the constant
        current holding_pA where there is one (at_rest True), else where `build` would start it. Families with
        `settle_ms > 0` implement it."""
        raise NotImplementedError(f"family {cls.name!r} has no steady_state")

    @classmethod
    def initial_values(cls, group: b2.NeuronGroup, params: np.ndarray) -> None:  # pragma: no cover - optional
        """Set state variables to rest; families override."""

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """JSON-ready description (used by the service's GET /v1/models)."""
        return {
            "name": cls.name,
            "description": cls.description,
            "parameters": [p.model_dump() for p in cls.params],
            "presets": cls.presets,
            "default_preset": cls.default_preset,
        }


# The unit strings a ParamSpec may use, mapped to Brian2 quantities (no eval of strings).
UNITS: dict[str, Any] = {
    "1": 1.0,
    "mV": b2.mV,
    "ms": b2.ms,
    "pA": b2.pA,
    "nS": b2.nS,
    "pF": b2.pF,
    "Mohm": b2.Mohm,
    "um": b2.um,
    "mS/cm2": b2.msiemens / b2.cm**2,
    "uF/cm2": b2.ufarad / b2.cm**2,
}


def assign_params(group: b2.NeuronGroup, family: type[ModelFamily], params: np.ndarray) -> None:
    """Set per-neuron parameter columns on a group, attaching each parameter's Brian2 unit."""
    for j, spec in enumerate(family.params):
        setattr(group, spec.name, params[:, j] * UNITS[spec.unit])
