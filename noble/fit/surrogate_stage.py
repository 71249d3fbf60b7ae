"""Stage 1: fit the surrogate's feature embedding to a recording by gradient descent through the FNO.

The unknowns are the surrogate's per-neuron features (e.g. I_thr, s_thr, v_rest, tau_m) normalised to the
trained range, x in [0, 1]^F (x = sigmoid(theta), so the search never leaves the range the network has
seen). For each selected sweep the surrogate is driven by a step of the sweep's amplitude on its own
protocol (onset, duration); only the first min(recorded, trained) step duration is compared, which by
causality is what a step of the recorded length would give.

Differentiable features of the surrogate trace v(t): soft spikes s(t) = sigmoid((v - theta_V) / kappa),
onsets d(t) = relu(s(t) - s(t-1)), cumulative count C(t) = sum d. Then
* spike count in the window = C(end)  (vs. threshold crossings of the recording),
* first-spike latency = integral of (1 - min(C, 1)) dt over the window (exactly the latency for a hard
  count, the window length for no spike; the recording's latency is defined the same way),
* rest = mean pre-step voltage, and for hyperpolarising steps the steady deflection,
* mean voltage over the window (informative even where a surrogate smooths spikes into their average).
Each residual is scaled by the recording's sweep-to-sweep variability (the sds stage 2 uses) combined in
quadrature with the surrogate's own error (its held-out spike-count and latency errors from the card,
`model_error_*` when the card has none): a surrogate is not the solver, and a 1-ms latency sd would make
its spike-timing error dominate. chi^2 = sum w z^2 is minimised with Adam from several starts at once
(the features measured directly on the recording, clipped into the range, plus training-population
members spread over the embedding).

Uncertainty (chosen over sbi NPE, which would need thousands of surrogate runs and a trained flow per
recording, and over a pure ensemble, which gives no width per mode): a Laplace approximation at the best
optimum, covariance = 2 H^-1 x max(1, chi2_min / (K - F)) with H the Hessian of chi^2 in x (central
differences of the autograd gradient, one batched pass; each direction capped at half the range),
combined with the ensemble of starts: every start that ends within the likelihood-ratio bound of the best
is a mode, and the reported mean / covariance are those of the equal-covariance Gaussian mixture over the
modes, weighted by their likelihood.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import chi2 as chi2_dist

from .objective import FitProblem

log = logging.getLogger(__name__)


class SurrogateUnavailable(RuntimeError):
    """No usable surrogate checkpoint (stage 1 cannot run)."""


class SurrogateStageConfig(BaseModel):
    """Budget and settings of the embedding fit."""

    model_config = ConfigDict(extra="forbid")
    n_starts: int = Field(2, ge=1, le=64, description="gradient-descent starts (data features + population)")
    steps: int = Field(8, ge=0, le=1000, description="Adam steps per start")
    lr: float = Field(0.15, gt=0, le=10, description="Adam step size on the logit of x")
    max_sweeps: int = Field(5, ge=1, le=64, description="sweeps compared (spread over the F-I curve)")
    amp_margin_pA: float = Field(60.0, ge=0, description="how far outside the trained amplitudes a sweep may be")
    kappa_mV: float = Field(2.0, gt=0, description="softness of the spike detector")
    threshold_mV: float = Field(-20.0, description="spike threshold (eFEL's default, as in the targets)")
    count_weight: float = Field(1.0, ge=0)
    latency_weight: float = Field(1.0, ge=0)
    rest_weight: float = Field(1.0, ge=0)
    deflection_weight: float = Field(1.0, ge=0)
    mean_v_weight: float = Field(1.0, ge=0)
    mean_v_sd_mV: float = Field(2.0, gt=0, description="scale of the window-mean voltage residual")
    model_error_count: float = Field(1.5, ge=0, description="surrogate spike-count error sd when the card has none")
    model_error_latency_ms: float = Field(5.0, ge=0, description="surrogate latency error sd when the card has none")
    laplace: bool = True
    fd_step: float = Field(0.02, gt=0, le=0.2, description="finite-difference step (in x) for the Hessian")
    level: float = Field(0.68, gt=0, lt=1)
    threads: int | None = Field(None, ge=1, le=256, description="torch threads (None: leave as is)")
    seed: int = Field(0, ge=0)


@dataclass
class SurrogateFit:
    """Stage-1 result: fitted features (raw units and normalised), their uncertainty, the modes found."""

    feature_names: list[str]
    feature_units: list[str]
    x: np.ndarray  # (F,) best, normalised
    features: np.ndarray  # (F,) best, raw units
    mean: np.ndarray  # (F,) mixture mean, raw units
    cov: np.ndarray  # (F, F) raw units
    cov_x: np.ndarray  # (F, F) normalised
    chi2: float
    objective: float
    at_edge: list[str]
    modes: list[dict[str, Any]]
    sweeps: list[int]  # positions (in the problem's recording) of the compared sweeps
    surrogate_v_mV: np.ndarray  # (S_sel, T) surrogate traces at the best features
    surrogate_t_ms: np.ndarray  # (T,) surrogate grid
    onset_ms: float  # surrogate step onset
    n_terms: int
    history: list[dict[str, float]] = field(default_factory=list)
    wall_s: float = 0.0
    surrogate_name: str = ""

    @property
    def sd(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.cov), 0, None))

    def as_dict(self) -> dict[str, Any]:
        return {
            "surrogate": self.surrogate_name,
            "features": {n: {"value": float(v), "mean": float(m), "sd": float(s), "unit": u,
                             "normalised": float(x)}
                         for n, v, m, s, u, x in zip(self.feature_names, self.features, self.mean, self.sd,
                                                     self.feature_units, self.x)},
            "cov": self.cov.tolist(), "cov_normalised": self.cov_x.tolist(),
            "objective": self.objective, "chi2": self.chi2, "n_terms": self.n_terms,
            "at_edge_of_trained_range": self.at_edge, "modes": self.modes, "wall_s": self.wall_s,
            "history": self.history,
        }


def load(path: str | Path | None) -> Any:
    """The surrogate at `path` (default: the shipped checkpoint); SurrogateUnavailable with the reason."""
    try:
        from noble.operator import default_surrogate_path, load_surrogate
    except Exception as exc:  # pragma: no cover - operator package missing or broken
        raise SurrogateUnavailable(f"noble.operator cannot be imported ({type(exc).__name__}: {exc})") from exc
    p = Path(path) if path is not None else default_surrogate_path()
    if not (p / "config.json").is_file() or not (p / "weights.safetensors").is_file():
        raise SurrogateUnavailable(f"no surrogate checkpoint at {p} (needs config.json and weights.safetensors); "
                                   "train one with `noble train` or run the fit with --no-surrogate")
    try:
        return load_surrogate(p)
    except Exception as exc:
        raise SurrogateUnavailable(f"surrogate checkpoint {p} cannot be loaded ({type(exc).__name__}: {exc})") from exc


# ---- data side --------------------------------------------------------------------------------------------
def _crossings_ms(v: np.ndarray, dt: float, thr: float) -> np.ndarray:
    up = np.flatnonzero((v[1:] >= thr) & (v[:-1] < thr)) + 1
    return up * dt


@dataclass
class _Targets:
    amps: np.ndarray  # (S,)
    window_ms: np.ndarray  # (S,) compared step length
    count: np.ndarray  # (S,)
    latency_ms: np.ndarray  # (S,) window length when silent
    deflection_mV: np.ndarray  # (S,) NaN for depolarising steps
    mean_v_mV: np.ndarray  # (S,) mean voltage over the compared window
    rest_mV: float
    sd_count: float
    sd_latency: np.ndarray  # (S,) the recording's latency scatter at each sweep's latency (+ surrogate error)
    sd_rest: float


def select_sweeps(problem: FitProblem, trained_amps: list[float], max_sweeps: int, margin_pA: float) -> list[int]:
    """Positions of up to max_sweeps sweeps spread over the F-I curve, inside the trained amplitudes +- margin:
    the most hyperpolarising, the last silent one below rheobase, the first two spiking ones, then evenly
    spaced spiking ones."""
    amps = problem.amplitudes_pA
    lo = min(trained_amps) - margin_pA if trained_amps else -np.inf
    hi = max(trained_amps) + margin_pA if trained_amps else np.inf
    ok = [k for k in np.argsort(amps, kind="stable") if lo <= amps[k] <= hi]
    if not ok:
        return []
    counts = problem.targets.feature_array("spike_count")
    spiking = [k for k in ok if counts[k] > 0]
    silent = [k for k in ok if not counts[k] > 0]
    chosen: list[int] = []
    neg = [k for k in silent if amps[k] < 0]
    if neg:
        chosen.append(int(neg[0]))
    below = [k for k in silent if amps[k] >= 0 and (not spiking or amps[k] < amps[spiking[0]])]
    if below:
        chosen.append(int(below[-1]))
    rest_budget = max(0, max_sweeps - len(chosen))
    if spiking and rest_budget:
        head = spiking[:2]
        tail = spiking[2:]
        extra = max(0, rest_budget - len(head))
        if extra and tail:
            idx = np.unique(np.linspace(0, len(tail) - 1, min(extra, len(tail))).round().astype(int))
            head = head + [tail[i] for i in idx]
        chosen.extend(int(k) for k in head[:rest_budget])
    if len(chosen) < max_sweeps:  # no spiking sweeps: fill with the remaining ones
        chosen.extend(int(k) for k in ok if k not in chosen)
    return sorted(set(chosen[:max_sweeps]), key=lambda k: amps[k])


def _data_targets(problem: FitProblem, sel: list[int], trained_ms: float, cfg: SurrogateStageConfig,
                  model_error: tuple[float, float] = (0.0, 0.0)) -> _Targets:
    S = len(sel)
    win = np.zeros(S)
    count = np.zeros(S)
    lat = np.zeros(S)
    defl = np.full(S, np.nan)
    mean_v = np.zeros(S)
    for j, k in enumerate(sel):
        s = problem.recording.sweeps[k]
        assert s.dt_ms is not None
        w = min(s.stim_end_ms - s.stim_start_ms, trained_ms)
        win[j] = w
        sp = _crossings_ms(s.v_mV, s.dt_ms, cfg.threshold_mV) - s.stim_start_ms
        sp = sp[(sp >= 0) & (sp < w)]
        count[j] = len(sp)
        lat[j] = sp[0] if len(sp) else w
        a0 = int(round(s.stim_start_ms / s.dt_ms))
        mean_v[j] = float(np.mean(s.v_mV[a0:a0 + max(1, int(round(w / s.dt_ms)))]))
        if s.stim_amplitude_pA < 0:
            a = int(round(s.stim_start_ms / s.dt_ms))
            r = max(1, int(round(s.rest_end_ms / s.dt_ms)))  # the resting baseline, before any pre-step
            base = float(np.median(s.v_mV[max(0, r - int(50 / s.dt_ms)):r]))
            b = int(round((s.stim_start_ms + w) / s.dt_ms))
            ss = float(np.median(s.v_mV[max(a, b - int(100 / s.dt_ms)):b]))
            defl[j] = ss - base
    t = problem.targets
    me_count, me_lat = model_error
    return _Targets(amps=problem.amplitudes_pA[sel], window_ms=win, count=count, latency_ms=lat,
                    deflection_mV=defl, mean_v_mV=mean_v, rest_mV=float(t.rest_mV if t.rest_mV is not None else np.nan),
                    sd_count=math.hypot(t.feature_sd["spike_count"].sd, me_count),
                    sd_latency=np.hypot(t.feature_sd["first_spike_latency_ms"].sd_at(lat), me_lat),
                    sd_rest=max((t.rest_sd_mV or 0.0) / math.sqrt(max(1, len(problem.recording))), 0.5))


def surrogate_error(surrogate: Any, cfg: SurrogateStageConfig) -> tuple[float, float]:
    """(spike-count sd, latency sd in ms) of the surrogate vs the solver on held-out neurons (from its card:
    mean |count error| / 0.8 and median |latency error| / 0.674, the Gaussian relations), else the config's."""
    m = (getattr(surrogate, "card", None) or {}).get("metrics_heldout") or {}
    try:
        c = float(m["spike_count_abs_err"]["mean"]) / 0.7979
    except (KeyError, TypeError, ValueError):
        c = float("nan")
    try:
        lat = float(m["first_spike_latency_abs_err_ms"]["median"]) / 0.6745
    except (KeyError, TypeError, ValueError):
        lat = float("nan")
    return (c if math.isfinite(c) else cfg.model_error_count, lat if math.isfinite(lat) else cfg.model_error_latency_ms)


# ---- the differentiable objective -------------------------------------------------------------------------
class _Objective:
    """chi^2(x) for a batch of normalised feature vectors, through the surrogate network (torch)."""

    def __init__(self, sur: Any, tg: _Targets, cfg: SurrogateStageConfig) -> None:
        import torch

        self.torch = torch
        self.sur = sur
        self.cfg = cfg
        self.tg = tg
        c = sur.config
        self.lo = torch.tensor([c.feature_ranges[n][0] for n in c.feature_names], dtype=torch.float32)
        self.hi = torch.tensor([c.feature_ranges[n][1] for n in c.feature_names], dtype=torch.float32)
        self.dt = float(c.dt_ms)
        self.onset = float(c.stimulus.start_ms)
        self.T = int(c.n_time)
        stim = np.stack([sur.step_stimulus(a) for a in tg.amps]).astype(np.float32)
        self.stim = torch.as_tensor(stim)  # (S, T)
        t = np.arange(self.T) * self.dt
        S = len(tg.amps)
        win = np.zeros((S, self.T), dtype=np.float32)
        for j in range(S):
            win[j] = (t >= self.onset) & (t < self.onset + tg.window_ms[j])
        self.win = torch.as_tensor(win)
        self.pre = torch.as_tensor(((t >= self.onset - 50.0) & (t < self.onset)).astype(np.float32))
        tail = np.zeros((S, self.T), dtype=np.float32)
        for j in range(S):
            e = self.onset + tg.window_ms[j]
            tail[j] = (t >= e - 100.0) & (t < e)
        self.tail = torch.as_tensor(tail)
        # residual weights: count, latency per sweep; deflection per hyperpolarising sweep; one rest term
        self.neg = torch.as_tensor(np.isfinite(tg.deflection_mV))
        self.n_terms = int(3 * S + int(self.neg.sum()) + (1 if math.isfinite(tg.rest_mV) else 0))

    def traces(self, x: Any) -> Any:
        """(B, F) normalised -> (B, S, T) mV."""
        B, S = x.shape[0], self.stim.shape[0]
        feats = self.lo + x * (self.hi - self.lo)
        f = feats[:, None, :].expand(B, S, feats.shape[1]).reshape(B * S, -1)
        stim = self.stim[None].expand(B, S, self.T).reshape(B * S, self.T)
        net = self.sur.net
        v = net.to_mV(net(f.to(self.sur.device), stim.to(self.sur.device))).float().cpu()
        return v.reshape(B, S, self.T)

    def chi2_terms(self, v: Any) -> tuple[Any, Any]:
        """(chi2 (B,), z (B, K)) from surrogate traces (B, S, T)."""
        torch = self.torch
        cfg, tg = self.cfg, self.tg
        s = torch.sigmoid((v - cfg.threshold_mV) / cfg.kappa_mV)
        d = torch.relu(s[..., 1:] - s[..., :-1])
        w = self.win[None, :, 1:]
        C = torch.cumsum(d * w, dim=-1)  # (B, S, T-1) onsets inside the window
        count = C[..., -1]
        lat = ((1.0 - torch.clamp(C, max=1.0)) * w).sum(-1) * self.dt
        z_count = (count - torch.as_tensor(tg.count, dtype=v.dtype)) / tg.sd_count
        z_lat = (lat - torch.as_tensor(tg.latency_ms, dtype=v.dtype)) / torch.as_tensor(tg.sd_latency, dtype=v.dtype)
        base = (v * self.pre).sum(-1) / self.pre.sum()  # (B, S)
        mean_v = (v * self.win[None]).sum(-1) / self.win.sum(-1)[None]
        z_mean = (mean_v - torch.as_tensor(tg.mean_v_mV, dtype=v.dtype)) / cfg.mean_v_sd_mV
        zs = [z_count * math.sqrt(cfg.count_weight), z_lat * math.sqrt(cfg.latency_weight),
              z_mean * math.sqrt(cfg.mean_v_weight)]
        if bool(self.neg.any()):
            ss = (v * self.tail[None]).sum(-1) / self.tail.sum(-1)[None]
            defl_t = torch.as_tensor(np.nan_to_num(tg.deflection_mV), dtype=v.dtype)
            sd_def = torch.clamp(0.1 * defl_t.abs(), min=1.0)
            z_def = ((ss - base) - defl_t) / sd_def
            zs.append(z_def[:, self.neg] * math.sqrt(cfg.deflection_weight))
        if math.isfinite(tg.rest_mV):
            zs.append(((base.mean(-1, keepdim=True) - tg.rest_mV) / tg.sd_rest) * math.sqrt(cfg.rest_weight))
        z = torch.cat(zs, dim=1)
        return (z**2).sum(-1), z

    def chi2(self, x: Any) -> Any:
        return self.chi2_terms(self.traces(x))[0]


def measured_features(problem: FitProblem) -> dict[str, float | None]:
    """The surrogate features measured directly on the recording (None where the protocol cannot give one)."""
    t = problem.targets
    measured: dict[str, float | None] = {
        "I_thr_pA": t.I_thr_pA, "s_thr_Hz_per_pA": t.s_thr_Hz_per_pA, "v_rest_mV": t.rest_mV,
        "tau_m_ms": t.tau_m_ms, "fi_slope_Hz_per_pA": t.fi_slope_Hz_per_pA,
        "input_resistance_MOhm": t.input_resistance_MOhm}
    if t.I_thr_pA is not None:  # the F-I parabola through rheobase (noble.operator.data.quadratic_fi)
        from noble.operator.data import quadratic_fi

        lin, quad = quadratic_fi(np.asarray(t.amplitudes_pA), t.feature_array("rate_Hz"), t.I_thr_pA)
        if math.isfinite(lin) and math.isfinite(quad):
            measured.update({"fi_lin_Hz_per_pA": lin, "fi_quad_Hz_per_pA2": quad})
    return measured


def population_distance(config: Any, measured: dict[str, float | None]) -> float:
    """How far a recording lies from a surrogate's training population: the distance, in units of each
    feature's trained range and RMS over the features measured on the recording, to the nearest member."""
    names = config.feature_names
    use = [j for j, k in enumerate(names) if measured.get(k) is not None and math.isfinite(float(measured[k]))]
    if not use or not config.population:
        return float("inf")
    lo = np.array([config.feature_ranges[names[j]][0] for j in use])
    hi = np.array([config.feature_ranges[names[j]][1] for j in use])
    pop = (np.asarray(config.population, dtype=np.float64)[:, use] - lo) / (hi - lo)
    x = (np.array([float(measured[names[j]]) for j in use]) - lo) / (hi - lo)
    return float(np.sqrt(np.min(np.mean((pop - x) ** 2, axis=1))))


def choose_population(problem: FitProblem) -> tuple[Path | None, dict[str, float]]:
    """The shipped hh surrogate whose training population is nearest the recording's features (so an
    adapting pyramidal cell is not warm-started from fast-spiking interneurons), and every distance."""
    from noble.operator import shipped_surrogate_paths
    from noble.operator.checkpoint import read_config

    measured = measured_features(problem)
    dist: dict[str, float] = {}
    paths: dict[str, Path] = {}
    for name, path in shipped_surrogate_paths().items():
        try:
            cfg = read_config(path)
        except Exception:  # noqa: BLE001 - a broken shipped checkpoint is skipped here, reported by load()
            continue
        if cfg.family == "hh":
            dist[name], paths[name] = population_distance(cfg, measured), path
    if not dist:
        return None, {}
    return paths[min(dist, key=dist.__getitem__)], dist


def _starts(sur: Any, problem: FitProblem, n: int, rng: np.random.Generator) -> np.ndarray:
    """Normalised start points: the recording's own features (clipped into range) first, then training-
    population members picked farthest-point so they spread over the embedding."""
    c = sur.config
    names = c.feature_names
    lo = np.array([c.feature_ranges[k][0] for k in names])
    hi = np.array([c.feature_ranges[k][1] for k in names])
    measured = measured_features(problem)
    pop = (np.asarray(c.population, dtype=np.float64) - lo) / (hi - lo) if c.population else np.zeros((0, len(names)))
    centre = np.median(pop, axis=0) if len(pop) else np.full(len(names), 0.5)
    first = np.array([(measured[k] - lo[j]) / (hi[j] - lo[j]) if measured.get(k) is not None else centre[j]
                      for j, k in enumerate(names)], dtype=np.float64)
    starts = [np.clip(first, 0.02, 0.98)]
    if len(pop):
        pool = np.clip(pop, 0.02, 0.98)
        dist = np.linalg.norm(pool - starts[0], axis=1)
        while len(starts) < n and np.any(dist > 1e-9):
            k = int(np.argmax(dist))
            starts.append(pool[k])
            dist = np.minimum(dist, np.linalg.norm(pool - pool[k], axis=1))
    while len(starts) < n:
        starts.append(rng.uniform(0.05, 0.95, size=len(names)))
    return np.stack(starts[:n])


def fit_embedding(problem: FitProblem, surrogate: Any, cfg: SurrogateStageConfig | None = None) -> SurrogateFit:
    """Stage 1 (module docstring): multi-start Adam through the FNO + Laplace/ensemble uncertainty."""
    import torch

    cfg = cfg or SurrogateStageConfig()
    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    sc = surrogate.config
    names, units = list(sc.feature_names), list(sc.feature_units)
    F = len(names)
    sel = select_sweeps(problem, list(sc.stimulus.amplitudes_pA), cfg.max_sweeps, cfg.amp_margin_pA)
    if not sel:
        raise ValueError(f"no sweep of {problem.recording.source} lies within the surrogate's trained amplitudes "
                         f"{min(sc.stimulus.amplitudes_pA):g}..{max(sc.stimulus.amplitudes_pA):g} pA "
                         f"(+-{cfg.amp_margin_pA:g})")
    tg = _data_targets(problem, sel, float(sc.stimulus.duration_ms), cfg, surrogate_error(surrogate, cfg))
    obj = _Objective(surrogate, tg, cfg)
    rng = np.random.default_rng(cfg.seed)
    x0 = _starts(surrogate, problem, cfg.n_starts, rng)
    for p in surrogate.net.parameters():
        p.requires_grad_(False)
    theta = torch.tensor(np.log(x0 / (1 - x0)), dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=cfg.lr)
    best_x = x0.copy()
    best_chi = np.full(len(x0), np.inf)
    history: list[dict[str, float]] = []
    for step in range(cfg.steps + 1):
        x = torch.sigmoid(theta)
        chi = obj.chi2(x)
        c = chi.detach().numpy().astype(np.float64)
        better = c < best_chi
        best_chi[better] = c[better]
        best_x[better] = x.detach().numpy()[better]
        history.append({"step": step, "best": float(best_chi.min()) / obj.n_terms,
                        "wall_s": time.perf_counter() - t_start})
        log.info("surrogate step %d chi2/K %s", step, np.round(c / obj.n_terms, 3))
        if step == cfg.steps:
            break
        opt.zero_grad()
        chi.sum().backward()
        opt.step()
    ib = int(np.argmin(best_chi))
    chi_min = float(best_chi[ib])
    K = obj.n_terms
    scale = max(1.0, chi_min / max(1, K - F))
    delta = float(chi2_dist.ppf(cfg.level, df=F)) * scale
    # Laplace at the best: Hessian of chi2 in x by central differences of the autograd gradient
    xb = best_x[ib]
    cov_x = np.diag(np.full(F, 1.0 / 12.0))  # uniform over the range if no Laplace
    if cfg.laplace:
        h = cfg.fd_step
        pts = []
        for j in range(F):
            for sgn in (1.0, -1.0):
                p = xb.copy()
                p[j] = np.clip(p[j] + sgn * h, 0.0, 1.0)
                pts.append(p)
        P = torch.tensor(np.stack(pts), dtype=torch.float32, requires_grad=True)
        obj.chi2(P).sum().backward()
        G = P.grad.numpy().astype(np.float64)  # (2F, F)
        steps_ = np.array([pts[2 * j][j] - pts[2 * j + 1][j] for j in range(F)])
        H = np.stack([(G[2 * j] - G[2 * j + 1]) / max(steps_[j], 1e-9) for j in range(F)], axis=1)
        H = 0.5 * (H + H.T)
        w, V = np.linalg.eigh(H)
        var = np.where(w > 0, scale * 2.0 / np.maximum(w, 1e-12), np.inf)
        var = np.minimum(var, 0.25)  # a direction the data do not constrain: sd 0.5 of the range, not infinity
        cov_x = (V * var) @ V.T
    # ensemble: modes within the likelihood-ratio bound, merged as an equal-covariance mixture
    order = np.argsort(best_chi)
    modes_x: list[np.ndarray] = []
    modes: list[dict[str, Any]] = []
    lo = np.array([sc.feature_ranges[k][0] for k in names])
    hi = np.array([sc.feature_ranges[k][1] for k in names])
    for k in order:
        if best_chi[k] > chi_min + delta:
            continue
        if any(np.linalg.norm(best_x[k] - m) < 0.05 for m in modes_x):
            continue
        modes_x.append(best_x[k])
        modes.append({"start": int(k), "chi2": float(best_chi[k]),
                      "features": {n: float(v) for n, v in zip(names, lo + best_x[k] * (hi - lo))}})
    wts = np.array([math.exp(-(m["chi2"] - chi_min) / (2 * scale)) for m in modes])
    wts /= wts.sum()
    M = np.stack(modes_x)
    mean_x = wts @ M
    between = (M - mean_x).T @ ((M - mean_x) * wts[:, None])
    cov_mix = cov_x + between
    for m, wt in zip(modes, wts):
        m["weight"] = float(wt)
    D = np.diag(hi - lo)
    with torch.no_grad():
        v_best = obj.traces(torch.tensor(xb[None], dtype=torch.float32))[0].numpy()
    edge = [n for n, v in zip(names, xb) if v < 0.03 or v > 0.97]
    return SurrogateFit(
        feature_names=names, feature_units=units, x=xb, features=lo + xb * (hi - lo),
        mean=lo + mean_x * (hi - lo), cov=D @ cov_mix @ D, cov_x=cov_mix, chi2=chi_min, objective=chi_min / K,
        at_edge=edge, modes=modes, sweeps=sel, surrogate_v_mV=v_best, surrogate_t_ms=np.arange(obj.T) * obj.dt,
        onset_ms=obj.onset, n_terms=K, history=history, wall_s=time.perf_counter() - t_start,
        surrogate_name=str(getattr(surrogate, "name", "")),
    )


def surrogate_traces(surrogate: Any, features: np.ndarray, amplitudes_pA: np.ndarray) -> np.ndarray:
    """(S, T) surrogate voltage at fixed raw features for steps of the given amplitudes (its protocol)."""
    feats = np.clip(np.asarray(features, dtype=np.float64),
                    [surrogate.config.feature_ranges[n][0] for n in surrogate.config.feature_names],
                    [surrogate.config.feature_ranges[n][1] for n in surrogate.config.feature_names])
    stim = np.stack([surrogate.step_stimulus(a) for a in amplitudes_pA])
    return surrogate.predict(np.repeat(feats[None], len(stim), axis=0), stim)
