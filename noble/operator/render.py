"""Spike rendering: APs drawn from a learned template at the spike times an operator's phase gives.

A neural operator trained on whole traces blurs what it cannot time exactly: on hh_fs, AP peaks within one
trace spread over 57 mV and the 0.2 ms grid cannot hold a 0.3 ms half-width. Here the trace is split the way
a physiologist reads it:

* the subthreshold voltage, with every AP window [peak - pre_ms, peak + post_ms] cut out and bridged by a
  straight line: smooth, drawn by the FNO on a coarse grid and interpolated to the output grid;
* a phase phi(t) whose k-th passage through k - 1 + spike_phase is the k-th AP peak: the FNO draws it as a
  correction of the F-I phase prior (noble/operator/phase.py), so spike times are sub-sample accurate;
* each AP, the whole voltage inside its window, drawn on a fine template grid by the AP decoder (an MLP) from
  the neuron's normalised features, the preceding ISI, the drive and the spike's index. Every AP of a neuron
  at a given rate is the same shape, as in the solver, whatever the subthreshold part does under it.

Inside a window the output is the decoder's voltage, cross-faded with the subthreshold voltage over the
window's first `blend_ms` and last `blend_post_ms` (raised cosines), so the pieces join without steps even
where the operator's trajectory and the phase disagree by a little. (A first version drew the AP as a residual over the
subthreshold line: that line moved with every misalignment and the AP peaks of one trace spread over 5 mV.)
Placement is linear interpolation of the template at the continuous spike time: the trace stays
differentiable in the spike times (and through them in the features), which the fit's surrogate stage uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .config import APRenderConfig

SPIKE_THRESHOLD_MV = -20.0  # eFEL's default AP threshold, as in the training features
N_DECODER_EXTRA = 3  # log ISI, drive, log spike index


# ---- targets from solver traces (numpy) ----

def peak_times_ms(v_mV: np.ndarray, dt_ms: float, threshold_mV: float = SPIKE_THRESHOLD_MV) -> np.ndarray:
    """AP peak times (ms from the trace start): the maximum between each upward threshold crossing and the
    next downward one (or the trace's end), refined by a parabola through the three samples around it."""
    v = np.asarray(v_mV, dtype=np.float64)
    above = v >= threshold_mV
    ups = np.flatnonzero(~above[:-1] & above[1:]) + 1
    downs = np.flatnonzero(above[:-1] & ~above[1:]) + 1
    ends = np.append(downs, len(v))[np.searchsorted(downs, ups, side="right")]
    out = np.empty(len(ups), dtype=np.float64)
    for i, (u, end) in enumerate(zip(ups, ends)):
        k = u + int(np.argmax(v[u:end]))
        shift = 0.0
        if 0 < k < len(v) - 1:
            a, b, c = v[k - 1], v[k], v[k + 1]
            den = a - 2 * b + c
            shift = 0.5 * (a - c) / den if den < 0 else 0.0
        out[i] = (k + float(np.clip(shift, -0.5, 0.5))) * dt_ms
    return out


def excise_aps(v_mV: np.ndarray, dt_ms: float, peaks_ms: np.ndarray, pre_ms: float, post_ms: float) -> np.ndarray:
    """The trace with each AP window replaced by the straight line between the voltages at its edges."""
    v = np.asarray(v_mV, dtype=np.float64).copy()
    t_end = (len(v) - 1) * dt_ms
    for tp in peaks_ms:
        a, b = tp - pre_ms, min(tp + post_ms, t_end)
        if a < 0:
            continue
        i0, i1 = int(np.ceil(a / dt_ms - 1e-9)), int(np.floor(b / dt_ms + 1e-9))
        lo, hi = max(int(a / dt_ms) - 1, 0), min(int(b / dt_ms) + 2, len(v))
        tt = np.arange(lo, hi) * dt_ms
        va, vb = np.interp([a, b], tt, v[lo:hi])
        ti = np.arange(i0, i1 + 1) * dt_ms
        v[i0:i1 + 1] = va + (vb - va) * (ti - a) / max(b - a, 1e-12)
    return v


def ap_windows(v_mV: np.ndarray, dt_ms: float, peaks_ms: np.ndarray, cfg: APRenderConfig) -> np.ndarray:
    """(S, n_template): each AP's voltage on the template grid, peak - pre_ms + u template_dt_ms."""
    v = np.asarray(v_mV, dtype=np.float64)
    u = np.arange(cfg.n_template) * cfg.template_dt_ms - cfg.pre_ms
    out = np.zeros((len(peaks_ms), cfg.n_template))
    for s, tp in enumerate(peaks_ms):
        lo = max(int((tp - cfg.pre_ms) / dt_ms) - 1, 0)
        hi = min(int((tp + cfg.post_ms) / dt_ms) + 3, len(v))
        out[s] = np.interp(tp + u, np.arange(lo, hi) * dt_ms, v[lo:hi])
    return out


def blend_weight(tau_ms: torch.Tensor, cfg: APRenderConfig) -> torch.Tensor:
    """1 inside the AP window, a raised cosine down to 0 over blend_ms at its start and blend_post_ms at its end
    (tau from the peak)."""
    d = torch.minimum((tau_ms + cfg.pre_ms) / cfg.blend_ms, (cfg.post_ms - tau_ms) / cfg.blend_post_ms)
    return 0.5 - 0.5 * torch.cos(math.pi * d.clamp(0.0, 1.0))


def stimulus_changes_ms(stim_pA: np.ndarray, dt_ms: float) -> np.ndarray:
    """Times (ms) where the command changes (a step's onset and offset)."""
    return (np.flatnonzero(np.diff(np.asarray(stim_pA)) != 0) + 1) * dt_ms


def phase_target(peaks_ms: np.ndarray, t_ms: np.ndarray, changes_ms: np.ndarray, end_ms: float,
                 spike_phase: float, cap: float = 0.9) -> np.ndarray:
    """phi(t) that passes k - 1 + spike_phase at the k-th peak: 0 until the last stimulus change before the
    first spike (a step's onset, or its offset for a rebound burst: the phase must not creep through a whole
    hyperpolarising step and fire from it), linear between anchors, after the last spike rising at the last
    ISI's pace (at most `cap` of a turn, so no phantom spike) until the step ends, then constant. 0 for a
    silent trace."""
    phi = np.zeros_like(t_ms, dtype=np.float64)
    p = np.asarray(peaks_ms, dtype=np.float64)
    if len(p) == 0:
        return phi
    before = np.asarray(changes_ms, dtype=np.float64)
    before = before[before < p[0]]
    t0 = float(before[-1]) if len(before) else 0.0
    anchors_t = np.concatenate([[t0], p])
    anchors_phi = np.concatenate([[0.0], np.arange(len(p)) + spike_phase])
    inside = (t_ms >= t0) & (t_ms <= p[-1])
    phi[inside] = np.interp(t_ms[inside], anchors_t, anchors_phi)
    last_isi = p[-1] - (p[-2] if len(p) > 1 else t0)
    slope = (1.0 if len(p) > 1 else spike_phase) / max(last_isi, 1e-6)
    after = t_ms > p[-1]
    stop = max(end_ms, p[-1])
    phi[after] = anchors_phi[-1] + np.minimum(slope * (np.minimum(t_ms[after], stop) - p[-1]), cap)
    return phi


# ---- the AP decoder and the renderer (torch) ----

class APDecoder(nn.Module):
    """(S, F + 3) -> (S, n_template) AP voltage, (v_mV - ap_offset_mV) / ap_scale_mV."""

    def __init__(self, n_features: int, cfg: APRenderConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features + N_DECODER_EXTRA
        for _ in range(cfg.layers):
            layers += [nn.Linear(width, cfg.hidden), nn.GELU()]
            width = cfg.hidden
        layers.append(nn.Linear(width, cfg.n_template))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


def decoder_inputs(x_norm: torch.Tensor, isi_ms: torch.Tensor, drive: torch.Tensor, index: torch.Tensor,
                   cfg: APRenderConfig) -> torch.Tensor:
    """The decoder's input rows: normalised features (S, F), then log ISI (the first spike's ISI is the
    cap), the drive (stimulus / stim scale) and log(1 + spike index), all O(1)."""
    isi = torch.clamp(isi_ms, min=0.5, max=cfg.isi_cap_ms)
    extra = torch.stack([torch.log(isi / 20.0), drive, torch.log1p(index) / 3.0], 1)
    return torch.cat([x_norm, extra], dim=1)


@dataclass
class Spikes:
    """Flattened spikes of a batch: trace index, peak time (ms, differentiable), index within the trace,
    preceding ISI (ms; the cap for the first)."""

    trace: torch.Tensor
    time_ms: torch.Tensor
    index: torch.Tensor
    isi_ms: torch.Tensor


def phase_spikes(phi: torch.Tensor, dt_ms: float, spike_phase: float, isi_cap_ms: float) -> Spikes:
    """Spikes where the running maximum of phi (B, T) passes spike_phase, spike_phase + 1, ...; the time is
    linear interpolation between the samples around each passage (differentiable in phi)."""
    B, T = phi.shape
    run = torch.cummax(phi, dim=-1).values
    top = float(run[:, -1].max().detach()) if T else 0.0
    n_max = int(math.floor(top - spike_phase)) + 1 if top >= spike_phase else 0
    empty = torch.zeros(0, dtype=torch.long, device=phi.device)
    if n_max <= 0:
        z = torch.zeros(0, dtype=phi.dtype, device=phi.device)
        return Spikes(empty, z, empty, z)
    levels = spike_phase + torch.arange(n_max, dtype=phi.dtype, device=phi.device)
    levels = levels.expand(B, n_max).contiguous()
    j = torch.searchsorted(run.detach().contiguous(), levels.contiguous())  # first sample with run >= level
    valid = (j < T) & (j > 0)
    jj = j.clamp(1, T - 1)
    lo, hi = run.gather(1, jj - 1), run.gather(1, jj)
    frac = ((levels - lo) / (hi - lo).clamp_min(1e-9)).clamp(0.0, 1.0)
    t = (jj - 1).to(phi.dtype) * dt_ms + frac * dt_ms
    b_idx, k_idx = torch.nonzero(valid, as_tuple=True)
    times = t[b_idx, k_idx]
    prev = torch.where(k_idx > 0, t[b_idx, (k_idx - 1).clamp_min(0)], times - isi_cap_ms)
    return Spikes(trace=b_idx, time_ms=times, index=k_idx, isi_ms=times - prev)


def guard_resets(drive_pA: torch.Tensor, i_thr_pA: torch.Tensor, hold_pA: torch.Tensor) -> torch.Tensor:
    """Where the after-offset guard restarts (elementwise, broadcast): the drive at or above rheobase, or below the
    holding level (a hyperpolarisation, whose offset may rebound)."""
    return (drive_pA >= i_thr_pA) | (drive_pA < hold_pA - 1e-6)


def drive_events(stim_pA: torch.Tensor, i_thr_pA: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(reset, offset), each (B, T) bool, of the after-offset guard: reset (guard_resets) against i_thr_pA (B,) and
    the holding level (the first sample); offset where the drive has just fallen from >= i_thr_pA below it."""
    above = stim_pA >= i_thr_pA[:, None]
    reset = guard_resets(stim_pA, i_thr_pA[:, None], stim_pA[:, :1])
    offset = torch.zeros_like(above)
    offset[:, 1:] = above[:, :-1] & ~above[:, 1:]
    return reset, offset


def quiet_after_offset(stim_pA: torch.Tensor, i_thr_pA: torch.Tensor, dt_ms: float, guard_ms: torch.Tensor
                       ) -> torch.Tensor:
    """(B, T) True where no AP can start: guard_ms (B,) or more after the drive fell from >= i_thr_pA (B,) below it,
    and it has stayed between the holding level (the first sample) and i_thr_pA since (a subthreshold neuron
    after a depolarising step; a hyperpolarisation or a return above rheobase ends it)."""
    B, T = stim_pA.shape
    idx = torch.arange(T, device=stim_pA.device).expand(B, T)
    reset, offset = drive_events(stim_pA, i_thr_pA)
    none = torch.full_like(idx, -1)
    last_reset = torch.cummax(torch.where(reset, idx, none), dim=1).values
    last_offset = torch.cummax(torch.where(offset, idx, none), dim=1).values
    return (last_offset > last_reset) & ((idx - last_offset) * dt_ms >= guard_ms[:, None])


CHANGE_BLOCK = 64


def change_points(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, samples) of every x[b, t] != x[b, t - 1] (t >= 1), in row-major order: what nonzero(x[:, 1:] !=
    x[:, :-1]) gives (+1), found without comparing and scanning every sample. Blocks of CHANGE_BLOCK samples whose
    max equals their min and whose first sample equals the sample before hold no change; only the others (a step
    has two) are compared sample by sample. On 32 x 24000 samples that was ~1 ms a call, 4 % of hh_mc_fs's. x finite
    (a stimulus: the service and the readers refuse NaN)."""
    B, T = x.shape
    k = CHANGE_BLOCK
    nb = (T - 1) // k  # whole blocks of samples 1 .. nb k
    if nb < 4:
        b, t = torch.nonzero(x[:, 1:] != x[:, :-1], as_tuple=True)
        return b, t + 1
    body = x[:, 1:1 + nb * k].reshape(B, nb, k)
    # amax and amin, not aminmax: its one pass over the blocks' last axis measured 2.5x their two here
    hit = (body.amax(-1) != body.amin(-1)) | (x[:, 1:1 + nb * k:k] != x[:, 0:nb * k:k])
    hb, hj = torch.nonzero(hit, as_tuple=True)
    first = 1 + hj * k  # each hit block's first sample
    cols = first[:, None] + torch.arange(k, device=x.device)
    moved = x[hb[:, None], cols] != x[hb[:, None], cols - 1]  # (hits, k)
    r, c = torch.nonzero(moved, as_tuple=True)
    b, t = hb[r], cols[r, c]
    tb, tt = torch.nonzero(x[:, 1 + nb * k:] != x[:, nb * k:-1], as_tuple=True)  # the samples after the last block
    if len(tb):
        b, t = torch.cat([b, tb]), torch.cat([t, tt + 1 + nb * k])
        order = torch.argsort(b * T + t)
        b, t = b[order], t[order]
    return b, t


def quiet_at(stim_pA: torch.Tensor, i_thr_pA: torch.Tensor, dt_ms: float, guard_ms: torch.Tensor, trace: torch.Tensor,
             at: torch.Tensor) -> torch.Tensor:
    """`quiet_after_offset` read only at the samples (trace (S,), at (S,)): the same result without its two running
    maxima over the whole (B, T) grid, which were ~20 % of hh_mc_fs's inference. Every event of `drive_events` (an
    offset, the start of a run of non-resets) sits where the drive changes or at sample 0, so they are read at the
    drive's change points alone (a step has two), and the last one at or before each sample is a search over them."""
    B, T = stim_pA.shape
    thr = i_thr_pA[:, None]
    hold = stim_pA[:, :1]
    b, t = change_points(stim_pA)
    rows = torch.arange(B, device=stim_pA.device)
    b = torch.cat([rows, b])
    t = torch.cat([torch.zeros_like(rows), t])
    order = torch.argsort(b * T + t)
    b, t = b[order], t[order]

    def reset(x: torch.Tensor, row: torch.Tensor) -> torch.Tensor:  # drive_events' reset at drive value x of `row`
        return guard_resets(x, thr[row, 0], hold[row, 0])

    now = stim_pA[b, t]
    before = stim_pA[b, (t - 1).clamp_min(0)]
    first = t == 0
    offset = ~first & (before >= thr[b, 0]) & ~(now >= thr[b, 0])
    run_start = first | (reset(now, b) != reset(before, b))
    key = trace * T + at
    row0 = trace * T

    def last_at_or_before(flat: torch.Tensor) -> torch.Tensor:  # per sample: the last event's index in its row, or -1
        j = torch.searchsorted(flat, key, right=True) - 1
        hit = flat[j.clamp_min(0)] if len(flat) else torch.zeros_like(key)
        return torch.where((j >= 0) & (hit >= row0), hit - row0, torch.full_like(key, -1))

    last_offset = last_at_or_before((b * T + t)[offset])
    before_run = last_at_or_before((b * T + t)[run_start]) - 1
    last_reset = torch.where(reset(stim_pA[trace, at], trace), at, before_run)
    return (last_offset > last_reset) & ((at - last_offset) * dt_ms >= guard_ms[trace])


def upsample_linear(x: torch.Tensor, factor: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """(B, Tc) samples at j*dt_c -> (B, Tc*factor) at i*dt_c/factor by linear interpolation (the last
    factor-1 samples hold the last value); out: a contiguous (B, Tc*factor) tensor to write it into."""
    B, Tc = x.shape
    if factor == 1:
        return x if out is None else out.copy_(x)
    step = torch.cat([x[:, 1:] - x[:, :-1], torch.zeros_like(x[:, :1])], dim=1)  # to the next sample
    w = torch.arange(factor, dtype=x.dtype, device=x.device) / factor
    if out is not None:  # x + w step, one pass
        torch.addcmul(x[:, :, None], step[:, :, None], w, out=out.view(B, Tc, factor))
        return out
    return torch.addcmul(x[:, :, None], step[:, :, None], w).reshape(B, -1)


def sample_at(x: torch.Tensor, rows: torch.Tensor, t_ms: torch.Tensor, dt_ms: float) -> torch.Tensor:
    """x[rows] (B, T) on a grid of dt_ms, linearly interpolated at times t_ms (S,)."""
    pos = (t_ms / dt_ms).clamp(0, x.shape[1] - 1)
    i0 = torch.floor(pos).long().clamp(max=x.shape[1] - 2)
    fr = pos - i0
    return x[rows, i0] * (1 - fr) + x[rows, i0 + 1] * fr


def paste_aps(base: torch.Tensor, spikes: Spikes, ap_mV: torch.Tensor, dt_ms: float,
              cfg: APRenderConfig, inplace: bool = False) -> torch.Tensor:
    """base (B, T) on the output grid with each spike's AP voltage (S, n_template) placed at its peak time by
    linear interpolation of the template and cross-faded in at the window edges (blend_weight). inplace: add
    into base itself (a contiguous tensor of the caller's own, outside autograd) instead of a copy of it."""
    if len(spikes.time_ms) == 0:
        return base
    B, T = base.shape
    W = ap_mV.shape[1]
    n_out = int(math.ceil((cfg.pre_ms + cfg.post_ms) / dt_ms)) + 1
    start = spikes.time_ms - cfg.pre_ms
    i0 = torch.ceil(start.detach() / dt_ms).long()
    idx = i0[:, None] + torch.arange(n_out, device=base.device)  # (S, n_out) output samples
    u = (idx.to(base.dtype) * dt_ms - start[:, None]) / cfg.template_dt_ms
    ok = (u >= 0) & (u <= W - 1) & (idx >= 0) & (idx < T)
    u0 = torch.floor(u.detach()).long().clamp(0, W - 2)
    fr = u - u0.to(u.dtype)
    ap = ap_mV.gather(1, u0) * (1 - fr) + ap_mV.gather(1, u0 + 1) * fr
    flat = (spikes.trace[:, None] * T + idx.clamp(0, T - 1))
    w = blend_weight(u * cfg.template_dt_ms - cfg.pre_ms, cfg)
    delta = torch.where(ok, w * (ap - base.reshape(-1)[flat]), 0.0)  # samples outside the trace add nothing
    if inplace:
        return base.view(-1).index_add_(0, flat.reshape(-1), delta.reshape(-1)).view(B, T)
    return base.reshape(-1).index_add(0, flat.reshape(-1), delta.reshape(-1)).reshape(B, T)
