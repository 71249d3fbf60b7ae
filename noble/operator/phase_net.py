"""A learned, per-neuron version of the F-I phase prior (APRenderConfig.phase_net).

The prior (phase.py) times the spikes from the F-I parabola rate r, a first-spike latency L = a r^-b and one onset
warp (A, tau, gain) shared by the whole population; the FNO then corrects phi. On the hh_fs held-out neurons that
left the first 5 spike times 2.1 ms off (median), while an MLP from the same six features and the step amplitude
to the first 5 spike times reaches 0.67 ms (k-NN over the training neurons: 2.5-3.5 ms;
benchmarks/spike_time_floor.py): the features carry the timing, the prior's population-wide shape and the FNO's
correction do not resolve it. A first try, a free gain exp(g(features, drive, time since onset)) on the prior's
rate trained through phi's cumulative sum on the 0.2 ms grid, underfit (first 5 spikes 1.8 ms on the training
neurons as on held-out ones).

Here an MLP of (normalised features, drive) gives four corrections of the prior's own terms, per neuron and
drive level: the latency L x exp(c0), the steady rate r x exp(c1), the onset speed-up A + c2 (>= 0) and its time
constant tau x exp(c3). phi is still the cumulative integral of a rate, so it is defined for any drive (the
corrections follow the drive sample by sample), stays 0 where the drive is subthreshold and is differentiable in
the features (the fit's surrogate stage). For a step the prior's phase is closed-form at every spike
(`step_phase_and_pace`), so the MLP is fitted on the training spikes' times directly, before the FNO trains; the
FNO then sees and corrects the learned prior.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .config import PhaseNetConfig
from .phase import first_spike_latency_ms, latency_phase_rate_Hz, warped_elapsed

N_CORRECTIONS = 4  # log latency factor, log rate factor, onset speed-up offset, log onset time-constant factor


class PhaseNet(nn.Module):
    """(features normalised (B, F), drive (B, T)) -> corrections (B, T, 4), each |c| < max_log_gain; the features'
    share of the first layer is computed once per trace. Zero at initialisation: the fitted prior unchanged."""

    def __init__(self, n_features: int, cfg: PhaseNetConfig) -> None:
        super().__init__()
        self.bound = float(cfg.max_log_gain)
        self.lin_features = nn.Linear(n_features, cfg.hidden)
        self.lin_drive = nn.Linear(1, cfg.hidden, bias=False)
        layers: list[nn.Module] = []
        for _ in range(cfg.layers - 1):
            layers += [nn.GELU(), nn.Linear(cfg.hidden, cfg.hidden)]
        layers += [nn.GELU(), nn.Linear(cfg.hidden, N_CORRECTIONS)]
        self.mlp = nn.Sequential(*layers)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def corrections(self, x_norm: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        """(B, F), (B, S) -> (B, S, 4) at S drive samples."""
        h = self.lin_features(x_norm)[:, None, :] + self.lin_drive(drive[..., None])
        return self.bound * torch.tanh(self.mlp(h) / self.bound)

    def forward(self, x_norm: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        """(B, F), (B, T) -> (B, T, 4): the MLP runs once per run of equal drive samples (a step has two or three
        runs, a noisy waveform up to T), then is gathered back: no sort, O(B T)."""
        B, T = drive.shape
        first, run = drive_runs(drive)
        return self.run_corrections(x_norm, drive, first).index_select(0, run).reshape(B, T, N_CORRECTIONS)

    def run_corrections(self, x_norm: torch.Tensor, drive: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """(R, 4): the corrections of the runs whose first samples are `first` (flat indices into drive (B, T))."""
        T = drive.shape[1]
        h = self.lin_features(x_norm)[first // T] + self.lin_drive(drive.reshape(-1)[first, None])
        return self.bound * torch.tanh(self.mlp(h) / self.bound)


def drive_runs(drive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) -> (flat index of each run of equal samples' first sample (R,), the run of every sample (B T,), int32:
    a bool cumsum in int32 took a quarter of the time of one in int64 plus the subtraction, 32 x 6000 samples)."""
    B, T = drive.shape
    starts = torch.ones(B, T, dtype=torch.bool, device=drive.device)
    starts[:, 1:] = drive[:, 1:] != drive[:, :-1]
    flat = starts.reshape(-1)
    dtype = torch.int32 if flat.numel() < 2**31 else torch.int64
    return torch.nonzero(flat).squeeze(1), torch.cumsum(flat, dim=0, dtype=dtype).sub_(1)


# The per-run terms are computed on a length padded to whole blocks of this many: torch's vectorised pow (the
# latency law) and its scalar tail differ in the last bit, so without it a neuron's spike times moved by float
# rounding with the number of runs in its batch (0.04 mV on an AP flank), and a shared forward pass was not the same
# as a request's own.
RUN_BLOCK = 64


def phase_rate_by_runs(net: PhaseNet, x_norm: torch.Tensor, drive: torch.Tensor, rate_of_runs: Callable[
        [torch.Tensor, torch.Tensor], torch.Tensor], on: torch.Tensor, clock_ms: torch.Tensor,
        warp: Sequence[float], latency: Sequence[float], spike_phase: float) -> torch.Tensor:
    """`phase_rate` with the drive's runs made explicit: the F-I rate (rate_of_runs(rows (R,), first flat samples
    (R,)) -> (R,)), the corrections and the corrected terms are computed once per run of equal drive samples and
    only the latency ramp and the onset warp per sample. The same numbers; on hh_mc_fs's steps (2-3 runs per
    trace) about half of the prior's time went to those per-sample terms."""
    B, T = drive.shape
    first, run = drive_runs(drive)
    rate, corr = rate_of_runs(first // T, first), net.run_corrections(x_norm, drive, first)
    pad = -len(first) % RUN_BLOCK  # padding runs, never gathered back
    if pad:
        rate = torch.cat([rate, rate.new_ones(pad)])
        corr = torch.cat([corr, corr.new_zeros(pad, corr.shape[1])])
    L, r, A, tau = corrected_terms(rate, corr, warp, latency)
    L_s, r_s, A_s, tau_s = (term.index_select(0, run).reshape(B, T) for term in (L, r, A, tau))  # per sample
    return latency_phase_rate_Hz(on, clock_ms, L_s, r_s, A_s, tau_s, float(warp[3]), spike_phase)


def corrected_terms(rate_Hz: torch.Tensor, corr: torch.Tensor, warp: Sequence[float], latency: Sequence[float]
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L ms, steady rate Hz, A, tau ms), each shaped like rate_Hz, from the prior's terms and the corrections."""
    A, tau, _delay, _gain = (float(w) for w in warp)
    L = first_spike_latency_ms(rate_Hz, latency) * torch.exp(corr[..., 0])
    return L, rate_Hz * torch.exp(corr[..., 1]), (A + corr[..., 2]).clamp_min(0.0), tau * torch.exp(corr[..., 3])


def phase_rate(rate_Hz: torch.Tensor, on: torch.Tensor, clock_ms: torch.Tensor, corr: torch.Tensor,
               warp: Sequence[float], latency: Sequence[float], spike_phase: float) -> torch.Tensor:
    """(B, T) d phi / dt in Hz: phase.phase_rate_Hz's ramp to spike_phase over the latency, then the warped steady
    rate, with the corrected terms, every term per sample: the definition `phase_rate_by_runs` (what the model
    runs) is tested against."""
    L, r, A, tau = corrected_terms(rate_Hz, corr, warp, latency)
    return latency_phase_rate_Hz(on, clock_ms, L, r, A, tau, float(warp[3]), spike_phase)


def step_phase_and_pace(s_ms: torch.Tensor, rate_Hz: torch.Tensor, corr: torch.Tensor, warp: Sequence[float],
                        latency: Sequence[float], spike_phase: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(phi, d phi / ds in turns per ms) s_ms after the onset of a constant suprathreshold drive: the closed form
    of phase_rate's integral (per spike: all arguments shaped (S,) and (S, 4))."""
    gain = float(warp[3])
    L, r, A, tau = corrected_terms(rate_Hz, corr, warp, latency)
    past = (s_ms - L).clamp_min(0.0)
    before = s_ms <= L
    phi = torch.where(before, spike_phase * s_ms / L,
                      spike_phase + r * gain / 1000.0 * warped_elapsed(past, A, tau))
    pace = torch.where(before, spike_phase / L, r * gain / 1000.0 * (1.0 + A * torch.exp(-past / tau)))
    return phi, pace


def train_phase_net(net: nn.Module, features: np.ndarray, stim_pA: np.ndarray, ap_row: np.ndarray,
                    ap_peak_ms: np.ndarray, ap_index: np.ndarray, fit_rows: np.ndarray, val_rows: np.ndarray,
                    seed: int, progress: bool) -> dict[str, float]:
    """Fit net.phase_net (everything else frozen) on the spikes of `fit_rows`: at each spike's time since its
    drive went suprathreshold, the closed-form phase (step_phase_and_pace, the drive at the spike) should be k +
    spike_phase; the loss is a Huber loss on the time error (phase miss / pace), each trace weighing the same
    and spike k of a train 1 / (1 + k / early_spikes) within it. Returns the median |time error| of the first 5
    spikes per trace before and after, on the fitting and the validation rows (ms)."""
    from tqdm.auto import tqdm

    from .embedding import normalise
    from .phase import drive_clock_ms, rate_Hz

    cfg: PhaseNetConfig = net.render_cfg.phase_net
    e = net.embedding_cfg
    c = e.spike_phase
    dt = net.dt_ms
    feats = torch.as_tensor(features, dtype=torch.float32)
    x_norm = normalise(feats, torch.as_tensor(e.lows, dtype=torch.float32),
                       torch.as_tensor(e.highs, dtype=torch.float32))
    stim = torch.as_tensor(stim_pA, dtype=torch.float32)
    i_thr = feats[:, e.feature_names.index("I_thr_pA")]
    # per spike: the drive at its peak and the time since the drive last went suprathreshold
    at = torch.as_tensor(np.clip(np.round(ap_peak_ms / dt).astype(np.int64), 0, stim.shape[1] - 1))
    rows_t = torch.as_tensor(ap_row)
    drive_pA = stim[rows_t, at]
    clock = torch.cat([drive_clock_ms(stim[r:r + 256] > i_thr[r:r + 256, None], dt)
                       for r in range(0, len(stim), 256)])
    s_ms = clock[rows_t, at] + (torch.as_tensor(ap_peak_ms, dtype=torch.float32) - at.to(torch.float32) * dt)
    r_Hz = rate_Hz(feats[rows_t], e.feature_names, drive_pA[:, None], e.fi_rate)[:, 0]
    drive = net.in_normalizer.transform(drive_pA[:, None])[:, 0]
    usable = (s_ms > 0) & (r_Hz > 0)
    k = torch.as_tensor(ap_index, dtype=torch.float32)

    def errors(sel: torch.Tensor) -> torch.Tensor:
        corr = net.phase_net.corrections(x_norm[rows_t[sel]], drive[sel, None])[:, 0, :]
        phi, pace = step_phase_and_pace(s_ms[sel], r_Hz[sel], corr, e.phase_warp, e.first_spike_latency, c)
        return (phi - (k[sel] + c)) / pace.detach().clamp_min(1.0 / 300.0)

    def of_rows(rows: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.flatnonzero(np.isin(ap_row, rows)), dtype=torch.long)

    def median_first5(rows: np.ndarray) -> float:
        sel = of_rows(rows)
        sel = sel[(k[sel] < 5) & usable[sel]]
        if len(sel) == 0:
            return float("nan")
        with torch.no_grad():
            return float(errors(sel).abs().median())

    out = {"fit_first5_ms_before": median_first5(fit_rows), "val_first5_ms_before": median_first5(val_rows)}
    fit_sel = of_rows(fit_rows)
    fit_sel = fit_sel[usable[fit_sel]]
    fit_trace_rows = np.unique(ap_row[fit_sel.numpy()])
    per_row = {int(r): [] for r in fit_trace_rows}
    for i, r in zip(fit_sel.tolist(), ap_row[fit_sel.numpy()].tolist()):
        per_row[int(r)].append(i)
    per_row_t = {r: torch.as_tensor(v) for r, v in per_row.items()}
    opt = torch.optim.Adam(net.phase_net.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(seed)
    net.phase_net.train()
    bar = tqdm(range(cfg.steps), desc="phase prior", disable=not progress, leave=False)
    for i in bar:
        for grp in opt.param_groups:  # cosine to 2 % of the rate
            grp["lr"] = cfg.lr * (0.02 + 0.49 * (1 + np.cos(np.pi * i / max(1, cfg.steps))))
        pick = rng.choice(fit_trace_rows, size=min(cfg.batch, len(fit_trace_rows)), replace=False)
        sel = torch.cat([per_row_t[int(r)] for r in pick])
        owner = torch.cat([torch.full((len(per_row_t[int(r)]),), j) for j, r in enumerate(pick)])
        err = errors(sel)
        w = 1.0 / (1.0 + k[sel] / cfg.early_spikes)
        w = w / torch.zeros(len(pick)).index_add_(0, owner, w)[owner]  # every trace weighs the same
        loss = (w * nn.functional.huber_loss(err, torch.zeros_like(err), reduction="none", delta=cfg.huber_ms)
                ).sum() / len(pick)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i % 100 == 0:
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    bar.close()
    net.phase_net.eval()
    out.update(fit_first5_ms_after=median_first5(fit_rows), val_first5_ms_after=median_first5(val_rows))
    return out
