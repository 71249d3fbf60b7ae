"""Stage 2: CMA-ES (`cma`) on the Brian2 `hh` parameters, each generation ONE vectorised simulation
(all candidates x all sweeps in a single group), with an uncertainty from the evaluated candidates.

Uncertainty: the 'acceptable set' of every evaluated parameter vector whose chi^2 lies within
Delta = chi2_{d}^{-1}(level) x max(1, chi2_min / (K - d)) of the best (a likelihood-ratio region in the d free
parameters, inflated by the reduced chi^2 when the model cannot reach the data, the usual scale-factor
correction for a misspecified fit). After the search, `probe` extra candidates drawn from the final
CMA-ES distribution widened around the best fill that region, so sloppy directions (which a converged
CMA-ES samples least) are represented. This is NOBLE's 'hall of fame' of acceptable models of one cell,
made quantitative; a finite-difference Laplace approximation is not usable here because spike counts make
the objective piecewise constant.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import cma
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import chi2 as chi2_dist

from .hhmodel import NAMES, ParamSpace, pin_rest
from .objective import Evaluation, FitProblem

log = logging.getLogger(__name__)


class SolverConfig(BaseModel):
    """CMA-ES budget and settings."""

    model_config = ConfigDict(extra="forbid")
    popsize: int = Field(12, ge=4, le=256)
    max_generations: int = Field(30, ge=0, le=10_000)
    sigma0: float = Field(0.15, gt=0, le=1.0, description="initial step size in the unit cube")
    dt_ms: float = Field(0.05, gt=0, le=0.1, description="integration step during the search")
    time_limit_s: float | None = Field(None, gt=0)
    tolfun: float = Field(1e-3, ge=0, description="stop when the objective's spread in recent generations is below")
    probe: int = Field(24, ge=0, le=4096, description="extra candidates for the uncertainty region")
    probe_scale: float = Field(2.0, gt=0, description="widening of the final CMA-ES distribution for probing")
    level: float = Field(0.68, gt=0, lt=1, description="coverage of the acceptable region")
    pin_rest: bool = Field(True, description="solve E_leak so the steady state is at the recorded rest")
    seed: int = Field(0, ge=0)


@dataclass
class SolverResult:
    """Every evaluated candidate, the best, and the acceptable region."""

    unit: np.ndarray  # (N, d) unit-cube coordinates
    params: np.ndarray  # (N, P) full hh parameters
    objective: np.ndarray  # (N,)
    chi2: np.ndarray  # (N,)
    generation: np.ndarray  # (N,) -1 = warm start, -2 = probe
    best: int
    accepted: np.ndarray  # (N,) bool
    delta_chi2: float
    generations: int
    wall_s: float
    history: list[dict[str, float]] = field(default_factory=list)
    stop: str = ""

    @property
    def best_params(self) -> np.ndarray:
        return self.params[self.best]

    @property
    def best_objective(self) -> float:
        return float(self.objective[self.best])

    def summary(self, space: ParamSpace, pinned: bool) -> dict[str, dict[str, float]]:
        """Per parameter: best, sd, lo, hi over the acceptable set (fixed parameters: their value)."""
        acc = self.params[self.accepted]
        out: dict[str, dict[str, float]] = {}
        for j, name in enumerate(NAMES):
            col = acc[:, j]
            out[name] = {"value": float(self.best_params[j]), "sd": float(np.std(col)) if len(col) > 1 else 0.0,
                         "lo": float(col.min()), "hi": float(col.max()),
                         "free": name in space.free or (name == "E_leak" and pinned)}
        return out


def candidates(space: ParamSpace, unit: np.ndarray, rest_mV: float | None) -> np.ndarray:
    """Unit-cube rows -> full parameter rows, E_leak pinned to the rest when given."""
    p = space.from_unit(unit)
    if rest_mV is not None:
        p, _ok = pin_rest(p, rest_mV)
    return p


def acceptable(chi2: np.ndarray, n_terms: int, dim: int, level: float) -> tuple[np.ndarray, float]:
    """(mask, Delta chi^2) of the acceptable region (module docstring)."""
    finite = np.isfinite(chi2)
    best = float(np.min(chi2[finite]))
    scale = max(1.0, best / max(1, n_terms - dim))
    delta = float(chi2_dist.ppf(level, df=max(1, dim))) * scale
    return finite & (chi2 <= best + delta), delta


def run_cmaes(problem: FitProblem, space: ParamSpace, x0: np.ndarray, cfg: SolverConfig,
              rest_mV: float | None = None, callback: Callable[[int, float], None] | None = None,
              extra_starts: np.ndarray | None = None) -> SolverResult:
    """CMA-ES from unit-cube point x0 (d,); every generation is one `problem.evaluate` call.

    extra_starts (m, d): further points evaluated with the first generation (e.g. other warm starts)."""
    t_start = time.perf_counter()
    d = space.dim
    x0 = np.clip(np.asarray(x0, dtype=np.float64).reshape(d), 0.0, 1.0)
    opts = {"bounds": [0.0, 1.0], "popsize": cfg.popsize, "seed": cfg.seed + 1, "verbose": -9,
            "tolfun": cfg.tolfun, "tolflatfitness": 3, "CMA_stds": None}
    es = cma.CMAEvolutionStrategy(x0.tolist(), cfg.sigma0, {k: v for k, v in opts.items() if v is not None})
    U: list[np.ndarray] = []
    P: list[np.ndarray] = []
    OBJ: list[np.ndarray] = []
    CHI: list[np.ndarray] = []
    GEN: list[np.ndarray] = []
    history: list[dict[str, float]] = []

    def run(unit: np.ndarray, gen: np.ndarray) -> Evaluation:
        params = candidates(space, unit, rest_mV)
        ev = problem.evaluate(params, cfg.dt_ms)
        obj = np.where(np.isfinite(ev.objective), ev.objective, np.inf)
        U.append(unit)
        P.append(params)
        OBJ.append(obj)
        CHI.append(np.where(np.isfinite(ev.chi2), ev.chi2, np.inf))
        GEN.append(gen)
        return ev

    starts = [x0[None, :]]
    if extra_starts is not None and len(extra_starts):
        starts.append(np.clip(np.atleast_2d(extra_starts), 0, 1))
    first = np.concatenate(starts)
    g = 0
    stop = "budget"
    if cfg.max_generations == 0:
        run(first, np.full(len(first), -1))
    while g < cfg.max_generations:
        X = np.asarray(es.ask(), dtype=np.float64)
        if g == 0:
            batch = np.concatenate([first, X])
            ev = run(batch, np.concatenate([np.full(len(first), -1), np.zeros(len(X), int)]))
            f = ev.objective[len(first):]
        else:
            ev = run(X, np.full(len(X), g))
            f = ev.objective
        es.tell(list(X), [float(v) if np.isfinite(v) else 1e6 for v in f])
        g += 1
        best_so_far = float(np.min(np.concatenate(OBJ)))
        history.append({"generation": g, "best": best_so_far, "median": float(np.median(f)),
                        "sigma": float(es.sigma), "evals": int(sum(len(o) for o in OBJ)),
                        "wall_s": time.perf_counter() - t_start})
        log.info("cma gen %d best %.4g median %.4g sigma %.3g", g, best_so_far, float(np.median(f)), es.sigma)
        if callback is not None:
            callback(g, best_so_far)
        s = es.stop()
        if s:
            stop = ",".join(s)
            break
        if cfg.time_limit_s is not None and time.perf_counter() - t_start > cfg.time_limit_s:
            stop = "time_limit"
            break
    obj_all = np.concatenate(OBJ)
    ibest = int(np.argmin(obj_all))
    if cfg.probe > 0:
        rng = np.random.default_rng(cfg.seed + 7)
        ub = np.concatenate(U)[ibest]
        cov = np.asarray(es.C) * (es.sigma * cfg.probe_scale) ** 2
        cov = 0.5 * (cov + cov.T) + 1e-10 * np.eye(d)
        probe = np.clip(rng.multivariate_normal(ub, cov, size=cfg.probe), 0.0, 1.0)
        run(probe, np.full(cfg.probe, -2))
    unit = np.concatenate(U)
    params = np.concatenate(P)
    obj_all = np.concatenate(OBJ)
    chi_all = np.concatenate(CHI)
    ibest = int(np.argmin(obj_all))
    mask, delta = acceptable(chi_all, len(problem.term_labels), d, cfg.level)
    return SolverResult(unit=unit, params=params, objective=obj_all, chi2=chi_all, generation=np.concatenate(GEN),
                        best=ibest, accepted=mask, delta_chi2=delta, generations=g,
                        wall_s=time.perf_counter() - t_start, history=history, stop=stop)
