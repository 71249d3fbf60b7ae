"""Stage 2: CMA-ES (`cma`) on the Brian2 `hh` parameters, each generation ONE vectorised simulation
(all candidates x all sweeps in a single group), with a Laplace-type uncertainty from a response surface.

Uncertainty: a finite-difference Laplace approximation is not usable here because spike counts make the
objective piecewise constant. Instead, after the search, probes along the principal axes of the final
CMA-ES distribution (+-0.5, 1, 2, 4 x its sd; one batched simulation) join the search's own evaluations,
and a full quadratic in the unit-cube coordinates is least-squares fitted to chi^2 of the evaluated points
nearest the best (a response-surface Hessian H, which averages over the spike-count steps). The posterior
is N(best, 2 H^-1 x max(1, chi2_min / (K - d))): the Laplace approximation of exp(-chi^2 / 2), inflated by
the reduced chi^2 when the model cannot reach the data (the usual scale-factor correction). It is pushed
through the parameter transforms (log scales, E_leak pinned to the rest) by sampling, giving each parameter
an sd and a central interval. The 'acceptable set' (every evaluated candidate within the likelihood-ratio
bound of the best, NOBLE's hall of fame of one cell) is kept as a second, sample-based view.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import cma
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import chi2 as chi2_dist

from .hhmodel import IDX, NAMES, ParamSpace, pin_rest, solve_area
from .objective import Evaluation, FitProblem
from .standalone import BuildHorizon

log = logging.getLogger(__name__)


class SolverConfig(BaseModel):
    """CMA-ES budget and settings."""

    model_config = ConfigDict(extra="forbid")
    popsize: int = Field(12, ge=4, le=256)
    # 80: on the regular-spiking recording the 9-parameter search (I_D included) sat at objective 7.3 from
    # generation 23 to 43 and reached 3.1 by 80 (latency at +75 pA 59 -> 111 ms vs 108 recorded); ~4 min.
    max_generations: int = Field(80, ge=0, le=10_000)
    sigma0: float = Field(0.15, gt=0, le=1.0, description="initial step size in the unit cube")
    dt_ms: float = Field(0.05, gt=0, le=0.1, description="integration step during the search")
    time_limit_s: float | None = Field(None, gt=0, description=(
        "wall-clock limit of the run, the posterior probe included: no generation is started that the measured "
        "time per evaluation says would end past it (the fit's time budget sets it; None: generations only)"))
    tolfun: float = Field(1e-3, ge=0, description="stop when the objective's spread in recent generations is below")
    probe: bool = Field(True, description="probe the principal axes after the search (uncertainty)")
    probe_scales: tuple[float, ...] = Field((0.5, 1.0, 2.0, 4.0), min_length=1,
                                            description="multiples of the final CMA-ES sd probed per axis")
    level: float = Field(0.68, gt=0, lt=1, description="coverage of the acceptable set")
    interval: float = Field(0.95, gt=0, lt=1, description="coverage of the reported parameter intervals")
    posterior_samples: int = Field(4000, ge=100, le=1_000_000)
    pin_rest: bool = Field(True, description="solve E_leak so the steady state is at the recorded rest")
    elitist: bool = Field(False, description="CMA-ES elitism (keep the best-ever in the population)")
    seed: int = Field(0, ge=0)


@dataclass
class SolverResult:
    """Every evaluated candidate, the best, and the acceptable region."""

    unit: np.ndarray  # (N, d) unit-cube coordinates
    params: np.ndarray  # (N, P) full hh parameters
    objective: np.ndarray  # (N,)
    chi2: np.ndarray  # (N,)
    generation: np.ndarray  # (N,) -1 = warm start, -2 = probe, -3 = feasibility polish
    best: int
    accepted: np.ndarray  # (N,) bool
    delta_chi2: float
    generations: int
    wall_s: float
    history: list[dict[str, float]] = field(default_factory=list)
    stop: str = ""
    cov_unit: np.ndarray | None = None  # (d, d) posterior covariance in unit-cube coordinates
    n_surface_points: int = 0  # evaluations the response surface was fitted to
    samples: np.ndarray | None = None  # (N, P) parameter rows drawn from the posterior
    unit_samples: np.ndarray | None = None  # (N, d) the same draws in unit-cube coordinates

    @property
    def best_params(self) -> np.ndarray:
        return self.params[self.best]

    @property
    def best_objective(self) -> float:
        return float(self.objective[self.best])

    def joined(self, unit: np.ndarray, params: np.ndarray, objective: np.ndarray, chi2: np.ndarray, code: int,
               best: int | None, n_terms: int, level: float) -> "SolverResult":
        """This result with further evaluations appended (generation `code`, e.g. -3 for the feasibility polish)
        and pooled into the acceptable set; `best` (an index into the new rows) becomes the reported best.
        The posterior (probes, response surface) stays this result's."""
        n0 = len(self.objective)
        chi_all = np.concatenate([self.chi2, chi2])
        mask, delta = acceptable(chi_all, n_terms, self.unit.shape[1], level)
        return replace(self, unit=np.concatenate([self.unit, unit]), params=np.concatenate([self.params, params]),
                       objective=np.concatenate([self.objective, objective]), chi2=chi_all,
                       generation=np.concatenate([self.generation, np.full(len(chi2), code)]),
                       best=self.best if best is None else n0 + best, accepted=mask, delta_chi2=delta)

    def summary(self, space: ParamSpace, pinned: bool, interval: float = 0.95) -> dict[str, dict[str, Any]]:
        """Per parameter: best value, posterior sd and central interval (from the calibrated Gaussian when
        probed, else the acceptable set), and the acceptable set's range."""
        acc = self.params[self.accepted]
        post = self.samples if self.samples is not None and len(self.samples) > 1 else acc
        q = (0.5 - interval / 2, 0.5 + interval / 2)
        out: dict[str, dict[str, Any]] = {}
        for j, name in enumerate(NAMES):
            col = post[:, j]
            lo, hi = (np.quantile(col, q) if len(col) > 1 else (col[0], col[0]))
            best = float(self.best_params[j])
            out[name] = {"value": best, "sd": float(np.std(col)) if len(col) > 1 else 0.0,
                         "lo": float(min(lo, best)), "hi": float(max(hi, best)), "interval": interval,
                         "accepted_lo": float(acc[:, j].min()), "accepted_hi": float(acc[:, j].max()),
                         "free": name in space.free or (name == "E_leak" and pinned)
                         or (name == "diam_um" and bool(space.area_points))}
        if space.leak_shift_mV is not None:
            best = float(space.leak_shifts(self.unit[self.best])[0])
            us = self.unit_samples if self.unit_samples is not None else self.unit[self.accepted]
            col = space.leak_shifts(us)
            lo, hi = np.quantile(col, q) if len(col) > 1 else (best, best)
            out["leak_shift_mV"] = {"value": best, "sd": float(np.std(col)), "lo": float(min(lo, best)),
                                     "hi": float(max(hi, best)), "interval": interval, "free": True,
                                     "accepted_lo": float(space.leak_shifts(self.unit[self.accepted]).min()),
                                     "accepted_hi": float(space.leak_shifts(self.unit[self.accepted]).max())}
        return out


def candidates(space: ParamSpace, unit: np.ndarray, rest_mV: float | np.ndarray | None) -> np.ndarray:
    """Unit-cube rows -> full parameter rows, E_leak pinned to the rest when given (then shifted by the
    fitted leak shift, when the space has one)."""
    p = space.from_unit(unit)
    if rest_mV is not None:
        p, _ok = pin_rest(p, rest_mV)
        p[:, IDX["E_leak"]] += space.leak_shifts(unit)
    if space.area_points:  # E_leak (a density) first: the area only scales the I-V it shapes
        p, _solved = solve_area(p, space.area_points)
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
              extra_starts: np.ndarray | None = None, rest_sem_mV: float = 0.0) -> SolverResult:
    """CMA-ES from unit-cube point x0 (d,); every generation is one `problem.evaluate` call.

    extra_starts (m, d): further warm starts; with them, all starts are scored in one batch first and
    CMA-ES is centred on the best (without them x0 is scored with the first generation).
    rest_sem_mV: uncertainty of the recorded rest, propagated into the pinned E_leak's posterior."""
    t_start = time.perf_counter()
    d = space.dim
    x0 = np.clip(np.asarray(x0, dtype=np.float64).reshape(d), 0.0, 1.0)
    opts = {"bounds": [0.0, 1.0], "popsize": cfg.popsize, "seed": cfg.seed + 1, "verbose": -9,
            "tolfun": cfg.tolfun, "tolflatfitness": 3, "CMA_stds": None, "CMA_elitist": bool(cfg.elitist)}
    U: list[np.ndarray] = []
    P: list[np.ndarray] = []
    OBJ: list[np.ndarray] = []
    CHI: list[np.ndarray] = []
    GEN: list[np.ndarray] = []
    history: list[dict[str, float]] = []

    standalone = getattr(problem, "simulator", "runtime") == "standalone"
    n_probe = 2 * d * len(cfg.probe_scales) if cfg.probe and d > 0 else 0
    # On compiled binaries the posterior probes run in generation-sized batches: the shape the search compiled, at
    # the per-evaluation cost the time budget predicted (one batch of all 2 d x 4 probes ran on the runtime, 1.5-2x
    # that cost per evaluation, and a fit ended 10 s past its budget).
    probe_step = max(1, cfg.popsize if standalone else n_probe)
    probe_batches = -(-n_probe // probe_step)

    def run(unit: np.ndarray, gen: np.ndarray, runs_left: int) -> Evaluation:
        params = candidates(space, unit, rest_mV)
        hint = None if rest_mV is None else np.full(len(unit), rest_mV)
        # what is left of this search: the budget's end on the wall clock the worker processes share, and the
        # batches of this size still to come (a compiled binary is built only where they can pay for it)
        until = (None if cfg.time_limit_s is None
                 else time.time() + t_start + cfg.time_limit_s - time.perf_counter())
        ev = problem.evaluate(params, cfg.dt_ms, v_hint_mV=hint, horizon=BuildHorizon(until, runs_left))
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
    if len(first) > 1:
        # several warm starts: score them together (one batch) and centre CMA-ES on the best
        ev0 = run(first, np.full(len(first), -1), 0)
        x0 = first[int(np.argmin(np.where(np.isfinite(ev0.objective), ev0.objective, np.inf)))]
    es = cma.CMAEvolutionStrategy(x0.tolist(), cfg.sigma0, {k: v for k, v in opts.items() if v is not None})
    g = 0
    t_gen, n_gen_before = time.perf_counter(), sum(len(o) for o in OBJ)
    per_eval_s: list[float] = []  # wall seconds per evaluation of each generation
    stop = "budget"
    if cfg.max_generations == 0 and len(first) == 1:
        run(first, np.full(len(first), -1), 0)
    while g < cfg.max_generations:
        X = np.asarray(es.ask(), dtype=np.float64)
        if g == 0 and len(first) == 1:
            batch = np.concatenate([first, X])
            ev = run(batch, np.concatenate([np.full(len(first), -1), np.zeros(len(X), int)]), 0)
            f = ev.objective[len(first):]
        else:
            ev = run(X, np.full(len(X), g), cfg.max_generations - g - 1 + probe_batches)
            f = ev.objective
        es.tell(list(X), [float(v) if np.isfinite(v) else 1e6 for v in f])
        g += 1
        n_evals = sum(len(o) for o in OBJ)
        per_eval_s.append((time.perf_counter() - t_gen) / max(1, n_evals - n_gen_before))
        t_gen, n_gen_before = time.perf_counter(), n_evals
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
        if cfg.time_limit_s is not None and _would_overrun(cfg, d, per_eval_s, time.perf_counter(), t_start):
            stop = "time_limit"
            break
    obj_all = np.concatenate(OBJ)
    ibest = int(np.argmin(obj_all))
    cov_unit = None
    samples = None
    draws = None
    n_fit = 0
    if cfg.probe and d > 0:
        rng = np.random.default_rng(cfg.seed + 7)
        ub = np.concatenate(U)[ibest]
        shape = np.asarray(es.C, dtype=np.float64) * float(es.sigma) ** 2
        lam, vec = np.linalg.eigh(0.5 * (shape + shape.T))
        sd_axes = np.sqrt(np.clip(lam, 1e-12, None))
        pts = [ub[None, :] + sgn * sc * sd_axes[i] * vec[:, i][None, :]
               for i in range(d) for sc in cfg.probe_scales for sgn in (1.0, -1.0)]
        probes = np.clip(np.concatenate(pts), 0.0, 1.0)
        for k, a in enumerate(range(0, len(probes), probe_step)):
            run(probes[a:a + probe_step], np.full(len(probes[a:a + probe_step]), -2), probe_batches - k - 1)
        U_all, C_all = np.concatenate(U), np.concatenate(CHI)
        ibest = int(np.argmin(np.concatenate(OBJ)))
        n_terms = len(problem.term_labels)
        cov_unit, n_fit = response_surface_cov(U_all, C_all, ibest, n_terms)
        draws, samples = posterior_draws(space, U_all[ibest], cov_unit, cfg.posterior_samples, rng, rest_mV,
                                         rest_sem_mV)
    unit = np.concatenate(U)
    params = np.concatenate(P)
    obj_all = np.concatenate(OBJ)
    chi_all = np.concatenate(CHI)
    ibest = int(np.argmin(obj_all))
    mask, delta = acceptable(chi_all, len(problem.term_labels), d, cfg.level)
    return SolverResult(unit=unit, params=params, objective=obj_all, chi2=chi_all, generation=np.concatenate(GEN),
                        best=ibest, accepted=mask, delta_chi2=delta, generations=g,
                        wall_s=time.perf_counter() - t_start, history=history, stop=stop, cov_unit=cov_unit,
                        n_surface_points=n_fit, samples=samples,
                        unit_samples=draws if samples is not None else None)


MEDIAN_OF = 5  # generations whose median cost per evaluation predicts the next one's (`_would_overrun`)


def _would_overrun(cfg: SolverConfig, d: int, per_eval_s: Sequence[float], now: float, t_start: float) -> bool:
    """Would one more generation, then the posterior probe, end past cfg.time_limit_s? The cost per evaluation is
    the median of the last three generations' (a generation is one Brian2 group, its cost ~ linear in its size):
    a single generation may carry a compilation, Brian2's cython one of a new equation set or group shape (30-50 s
    on 2 cores for a current switched on for the first time on a machine, which once stopped an FSI fit after one
    generation) or the cpp_standalone build of a repeated shape (standalone.py, ~6 s, which stopped a fit after
    three generations when the last one predicted), so until a second one has run only the limit itself stops
    the search. Compilations come early (each new group size, then the build), and two of the first three
    generations can carry one (an FSI fit with I_Na's slow inactivation switched on for the first time on a machine:
    0.85, 0.2 and 1.4 s per evaluation, and the median stopped it after 3 of 80 generations with 100 s left): before
    MEDIAN_OF generations the cheapest one so far predicts, from then on the median of the last MEDIAN_OF (a cost
    that rises for good, e.g. a fall back to the runtime, is believed within three generations)."""
    assert cfg.time_limit_s is not None
    if len(per_eval_s) < 2:
        return now - t_start > cfg.time_limit_s
    n_probe = 2 * d * len(cfg.probe_scales) if cfg.probe and d > 0 else 0
    recent = per_eval_s[-MEDIAN_OF:]
    per_eval = float(np.median(recent)) if len(recent) >= MEDIAN_OF else float(min(per_eval_s))
    return now - t_start + per_eval * (cfg.popsize + n_probe) > cfg.time_limit_s


def posterior_draws(space: ParamSpace, unit_best: np.ndarray, cov_unit: np.ndarray, n: int,
                    rng: np.random.Generator, rest_mV: float | None = None, rest_sem_mV: float = 0.0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(unit-cube draws, their full parameter rows) from N(unit_best, cov_unit), clipped to the cube; with a
    pinned rest, the rest itself is drawn from its standard error before E_leak is solved for it."""
    draws = rng.multivariate_normal(unit_best, cov_unit, size=n)
    rests = None if rest_mV is None else rest_mV + rest_sem_mV * rng.standard_normal(len(draws))
    draws = np.clip(draws, 0.0, 1.0)
    return draws, candidates(space, draws, rests)


def response_surface_cov(unit: np.ndarray, chi2: np.ndarray, best: int, n_terms: int,
                         max_sd: float = 0.5) -> tuple[np.ndarray, int]:
    """(posterior covariance in unit coordinates, points used) from a quadratic fitted to chi^2 around `best`.

    Uses the evaluated points nearest the best in chi^2 (at least 3x the quadratic's coefficients, all within
    a rise of 10 x the chi^2_d median); eigenvalues of H are floored so no sd exceeds max_sd (a direction the
    data do not constrain is reported as spanning the box, not as infinitely uncertain)."""
    d = unit.shape[1]
    ok = np.isfinite(chi2)
    U, c = unit[ok], chi2[ok]
    ub, cb = unit[best], chi2[best]
    n_coef = 1 + d + d * (d + 1) // 2
    inflate = max(1.0, float(cb) / max(1, n_terms - d))
    rise = c - cb
    order = np.argsort(rise)
    within = int(np.sum(rise <= 10.0 * float(chi2_dist.ppf(0.5, df=d)) * inflate))
    n = min(len(order), max(3 * n_coef, within))
    sel = order[:n]
    D = U[sel] - ub
    iu = np.triu_indices(d)
    quad = (D[:, :, None] * D[:, None, :])[:, iu[0], iu[1]]
    X = np.concatenate([np.ones((n, 1)), D, quad], axis=1)
    coef, *_ = np.linalg.lstsq(X, c[sel], rcond=None)
    q = coef[1 + d:]
    H = np.zeros((d, d))
    H[iu] = q
    H = H + H.T  # diagonal: 2 c_jj; off-diagonal: c_jk
    lam, vec = np.linalg.eigh(0.5 * (H + H.T))
    lam = np.maximum(lam, 2.0 / max_sd**2)
    cov = inflate * 2.0 * (vec / lam) @ vec.T
    return cov, int(n)