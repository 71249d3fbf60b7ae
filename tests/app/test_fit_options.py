"""`/v1/fit`'s options map onto the fit's FitConfig: every model-class switch reaches it, and a bad value is refused
naming the field (the router answers 422 with that message)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from noble.app.routers.fit import FitOptions
from noble.fit.api import FitConfig


def test_every_switch_reaches_the_fit_config() -> None:
    opts = FitOptions(h_current="auto", kir_current="off", spike_kinetics="on", persistent_sodium="auto",
                      sodium_reversal="off", baseline_drift="on", bridge_balance="off", input_resistance="search",
                      depolarised_spikes="off", ahp_current="on", t_current="off", sodium_slow_inactivation="on",
                      time_budget_s=90, seed=3)
    cfg = FitConfig.model_validate(opts.fit_config())
    assert (cfg.h_current, cfg.kir_current, cfg.spike_kinetics, cfg.persistent_sodium, cfg.sodium_reversal,
            cfg.baseline_drift, cfg.bridge_balance, cfg.input_resistance, cfg.depolarised_spikes, cfg.ahp_current,
            cfg.t_current, cfg.sodium_slow_inactivation) == ("auto", "off", "on", "auto", "off", "on", "off", "search",
                                                             "off", "on", "off", "on")
    assert cfg.time_budget_s == 90 and cfg.solver.seed == 3
    defaults = FitConfig.model_validate(FitOptions().fit_config())
    assert defaults.input_resistance == "solve" and defaults.spike_kinetics == "auto"
    assert defaults.sodium_reversal == "auto" and defaults.baseline_drift == "off"
    assert defaults.depolarised_spikes == "auto" and defaults.ahp_current == "auto" and defaults.t_current == "auto"
    assert defaults.sodium_slow_inactivation == "auto"
    # the service's fit is `noble fit`'s: its seed overrides the fit's solver defaults, not SolverConfig's own
    assert defaults.solver == FitConfig().solver.model_copy(update={"seed": 0})
    assert FitConfig.model_validate({"solver": {"sigma0": 0.3}}).solver.sigma0 == 0.3


def test_keyword_overrides_are_validated_like_a_config_file() -> None:
    """fit_recording(path, solver={"seed": 1}) (benchmarks, notebooks): the partial solver merges onto the fit's
    defaults and becomes a SolverConfig (it had stayed a raw dict, and dumping fit.json warned)."""
    cfg = FitConfig(restarts=2).overridden(solver={"seed": 1}, input_resistance="search")
    assert cfg.solver == FitConfig().solver.model_copy(update={"seed": 1})
    assert (cfg.restarts, cfg.input_resistance) == (2, "search")
    with pytest.raises(ValidationError) as err:
        FitConfig().overridden(restarts=0)
    assert err.value.errors()[0]["loc"] == ("restarts",)


def test_a_bad_switch_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        FitOptions(input_resistance="guess")
    assert err.value.errors()[0]["loc"] == ("input_resistance",)
