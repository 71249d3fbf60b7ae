"""The NOBLE surrogate network: frequency embedding -> 1-D FNO (neuraloperator) -> voltage, with the
stimulus (input) and voltage (output) normalisers inside the module so the weights file carries them.

`Surrogate` is the inference object the CLI and the service use: batched `predict` under
torch.inference_mode on a fixed time grid, with the trained feature ranges enforced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from neuralop.data.transforms.normalizers import UnitGaussianNormalizer
from neuralop.layers.channel_mlp import ChannelMLP
from neuralop.layers.embeddings import GridEmbeddingND
from neuralop.layers.spectral_convolution import SpectralConv
from neuralop.models import FNO
from torch import nn

from .config import SurrogateConfig
from .embedding import feature_embedding, fi_phase, normalise, phase_sin_cos
from .phase import CLOCK_TAUS_MS, drive_clock_ms, phase_rate_Hz, rate_Hz, spike_clock
from .phase_net import PhaseNet, phase_rate_by_runs
from .render import (APDecoder, Spikes, decoder_inputs, paste_aps, phase_spikes, quiet_at, sample_at,
                     upsample_linear)


def _contract_dense_1d(x: torch.Tensor, weight: Any, separable: bool = False,
                       w_modes: torch.Tensor | None = None) -> torch.Tensor:
    """neuraloperator's dense 1-D spectral contraction einsum('bix,iox->box') done as ONE contiguous
    batched complex matmul over the modes. Same numbers; on CPU torch's einsum routes this through a
    strided complex bmm that is ~10x slower (measured here), and it dominated training time.
    `w_modes` is the weight already laid out as (modes, i, o), if the caller has it."""
    if w_modes is None:
        w = weight if torch.is_tensor(weight) else weight.to_tensor()
        w_modes = w.permute(2, 0, 1).contiguous()
    out = torch.bmm(x.permute(2, 0, 1).contiguous(), w_modes)  # (modes, b, o)
    return out.permute(1, 2, 0)


class FastSpectralConv(SpectralConv):
    """neuraloperator's SpectralConv (same weights, FFTs and mode truncation) with the contraction above
    for the dense, non-separable 1-D case; any other case keeps neuraloperator's own contraction.
    Without autograd the weight's (modes, i, o) copy is kept until the weight changes: laying it out again
    on every call was 54 % of a batch-1 forward pass (9 of 17 ms on hh_fs)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._w_modes: tuple[tuple[int, int], torch.Tensor] | None = None
        if self.order == 1 and not self.separable and kwargs.get("factorization") in (None, "dense"):
            self._contract = self._contract_dense

    def _contract_dense(self, x: torch.Tensor, weight: Any, separable: bool = False) -> torch.Tensor:
        w = weight if torch.is_tensor(weight) else weight.to_tensor()
        if torch.is_grad_enabled():  # training, or gradients through the inputs (the fit's surrogate stage)
            return _contract_dense_1d(x, w)
        key = (w.data_ptr(), w._version)  # an optimiser step or load_state_dict bumps the version
        if self._w_modes is None or self._w_modes[0] != key:
            self._w_modes = (key, w.detach().permute(2, 0, 1).contiguous())
        return _contract_dense_1d(x, w, w_modes=self._w_modes[1])


def operator_grid_mean(x: torch.Tensor, c: int) -> torch.Tensor:
    """(B, T) -> (B, T / c): the mean of each c consecutive samples, as c strided adds (a reduction over a last axis
    of 2-8 elements vectorises poorly: 0.8 vs 0.6 ms for 32 x 24000 samples, 1 thread)."""
    if c == 1:
        return x
    total = x[:, 0::c]
    for r in range(1, c):
        total = total + x[:, r::c]
    return total / c


class PointwiseConv1d(nn.Conv1d):
    """A kernel-1 Conv1d (the FNO's lifting, projection, skips and channel MLPs) run as a matmul over channels:
    the same weights and numbers to float rounding; at the shipped surrogates' 6-24 channels oneDNN's convolution
    took 2.5x the time of the matmul (12 -> 12 channels x 375 points x 32 traces: 246 vs 91 us, 1 thread)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = pointwise(self.weight[..., 0], x)
        return out if self.bias is None else out + self.bias[:, None]


def pointwise(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """w (O, C) applied over the channels of x (B, C, L): a batched matmul against the weight broadcast over the
    batch (stride 0), which keeps the output (B, O, L) contiguous; torch.matmul folds it into one (B L, C) matmul
    whose input and output transposes cost more than the product here."""
    if x.dim() != 3:
        return torch.matmul(w, x)
    return torch.bmm(w.expand(x.shape[0], -1, -1), x)


def use_pointwise_matmul(module: nn.Module) -> None:
    """Every plain kernel-1 nn.Conv1d in `module` runs as PointwiseConv1d (its class swapped; the parameters and
    the state dict stay as they are)."""
    for m in module.modules():
        if (type(m) is nn.Conv1d and m.kernel_size == (1,) and m.stride == (1,) and m.padding == (0,)
                and m.dilation == (1,) and m.groups == 1 and m.padding_mode == "zeros"):
            m.__class__ = PointwiseConv1d


def fno_with_constant_channels(fno: FNO, before: torch.Tensor, constant: torch.Tensor,
                               after: torch.Tensor | None) -> torch.Tensor:
    """fno(cat([before, constant broadcast along time, after], dim=1)) without materialising the constant
    channels: their share of the lifting's first 1x1 convolution is the same at every time point, so it is
    computed once per trace and added as a bias. Same numbers to float rounding; on hh_mc_fs the 48 feature-
    embedding channels were 62 % of the lifting's inputs, and their concatenation 12 % of a forward pass.
    before (B, Cb, L), constant (B, Cc), after (B, Ca, L) or None."""
    lift = fno.lifting
    pos = fno.positional_embedding
    plain = (isinstance(lift, ChannelMLP) and lift.dropout is None and lift.fcs[0].kernel_size == (1,)
             and (pos is None or isinstance(pos, GridEmbeddingND)))
    if not plain:  # a lifting this shortcut does not know: the library's own forward on the full input
        L = before.shape[-1]
        parts = [before, constant[:, :, None].expand(-1, -1, L)] + ([after] if after is not None else [])
        return fno(torch.cat(parts, dim=1))
    x = torch.cat([before, after], dim=1) if after is not None else before
    if pos is not None:
        x = pos(x)  # appends the grid channel(s) after the inputs, as FNO.forward does
    first = lift.fcs[0]
    w = first.weight[..., 0]  # (H, C_in): [before | constant | after | grid]
    nb, nc = before.shape[1], constant.shape[1]
    bias = constant @ w[:, nb:nb + nc].T
    if first.bias is not None:
        bias = bias + first.bias
    h = pointwise(torch.cat([w[:, :nb], w[:, nb + nc:]], dim=1), x) + bias[:, :, None]  # a kernel-1 conv
    for fc in lift.fcs[1:]:  # ChannelMLP.forward: the nonlinearity between layers, none after the last
        h = fc(lift.non_linearity(h))
    if fno.domain_padding is not None:
        h = fno.domain_padding.pad(h)
    for layer in range(fno.n_layers):
        h = fno.fno_blocks(h, layer)
    if fno.domain_padding is not None:
        h = fno.domain_padding.unpad(h)
    return fno.projection(h)


class NobleOperator(nn.Module):
    """features (B, F) + stim_pA (B, T) -> normalised voltage (B, T); `.to_mV` undoes the output normaliser.

    With `config.render` the FNO runs on a coarser grid (render.coarse_dt_ms) and draws the subthreshold
    voltage and a correction of the F-I phase; `forward` then renders APs on the output grid with the AP
    decoder (noble/operator/render.py). Without it the FNO draws the whole trace on the output grid."""

    def __init__(self, cfg: SurrogateConfig) -> None:
        super().__init__()
        self.embedding_cfg = cfg.embedding
        self.render_cfg = cfg.render
        f = cfg.fno
        self.fold = f.time_fold
        self.coarse = cfg.coarse_factor
        self.dt_ms = cfg.dt_ms
        self.op_dt_ms = cfg.dt_ms * self.coarse  # the operator's grid
        if cfg.n_time % (self.fold * self.coarse):
            raise ValueError(f"fno.time_fold={self.fold} (x coarse factor {self.coarse}) must divide "
                             f"n_time={cfg.n_time}")
        self.output_blur = f.output_blur
        self.phase_stride = f.phase_stride
        n_phase = (2 + (2 * len(CLOCK_TAUS_MS) if cfg.embedding.spike_clock else 0)) * (self.fold // f.phase_stride) \
            if cfg.embedding.fi_phase else 0
        self.spike_times = cfg.render.spike_times if cfg.render is not None else None
        # (subthreshold voltage, phase correction) when rendering, unless the APs come from the prior alone
        n_out = 2 if self.spike_times in ("operator", "prior_with_rebound") else 1
        self.fno = FNO(
            n_modes=(f.n_modes,), in_channels=self.fold + cfg.embedding.n_channels + n_phase,
            out_channels=n_out * self.fold,
            hidden_channels=f.hidden_channels, n_layers=f.n_layers,
            lifting_channel_ratio=f.lifting_channel_ratio, projection_channel_ratio=f.projection_channel_ratio,
            channel_mlp_expansion=f.channel_mlp_expansion, positional_embedding=f.positional_embedding,
            domain_padding=f.domain_padding, conv_module=FastSpectralConv,
        )
        use_pointwise_matmul(self.fno)
        one = torch.ones(1, 1)
        self.in_normalizer = UnitGaussianNormalizer(mean=0.0 * one, std=cfg.stim_scale_pA * one, eps=0.0)
        self.out_normalizer = UnitGaussianNormalizer(mean=cfg.v_mean_mV * one, std=cfg.v_std_mV * one, eps=0.0)
        if cfg.render is not None:
            self.decoder = APDecoder(len(cfg.feature_names), cfg.render)
            self.ap_scale_mV = cfg.ap_scale_mV
        if cfg.render is not None and cfg.render.phase_net is not None and not cfg.embedding.fi_phase:
            raise ValueError("render.phase_net corrects the F-I phase prior: it needs embedding.fi_phase")
        self.phase_net = PhaseNet(len(cfg.feature_names), cfg.render.phase_net) \
            if cfg.render is not None and cfg.render.phase_net is not None else None

    def prior_phase(self, features: torch.Tensor, stim_pA: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(rate Hz, phi turns), each (B, T) on the grid of stim_pA (the operator's): the F-I phase prior."""
        e = self.embedding_cfg
        if self.phase_net is None:
            rate = phase_rate_Hz(features, e.feature_names, stim_pA, e.fi_rate, e.phase_warp, self.op_dt_ms,
                                 e.first_spike_latency, e.spike_phase)
        else:  # the learned, per-neuron prior (phase_net.py)
            if e.phase_warp is None or e.first_spike_latency is None:
                raise ValueError("render.phase_net corrects the fitted phase_warp and first_spike_latency: "
                                 "both must be set")
            lows = torch.as_tensor(e.lows, dtype=features.dtype, device=features.device)
            highs = torch.as_tensor(e.highs, dtype=features.dtype, device=features.device)
            on = stim_pA > features[:, e.feature_names.index("I_thr_pA"), None]
            flat_stim = stim_pA.reshape(-1)

            def rate_of_runs(rows: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
                return rate_Hz(features[rows], e.feature_names, flat_stim[first, None], e.fi_rate)[:, 0]

            rate = phase_rate_by_runs(self.phase_net, normalise(features, lows, highs),
                                      self.in_normalizer.transform(stim_pA), rate_of_runs, on,
                                      drive_clock_ms(on, self.op_dt_ms), e.phase_warp, e.first_spike_latency,
                                      e.spike_phase)
        return rate, torch.cumsum(rate, dim=-1) * (self.op_dt_ms / 1000.0)

    def phase_channels(self, rate: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """(B, P, T) from the F-I prior's (rate, phi) (prior_phase): sin and cos of 2 pi phi(t), phi = the
        spikes the neuron's F-I features predict so far (noble/operator/phase.py), then with `spike_clock` its
        4 channels. Fixed, not learned: a rate learned through sin(2 pi phi) sees gradients that wind with phi
        and drifts (tried: 2x the spikes)."""
        e = self.embedding_cfg
        if not e.spike_clock:
            return fi_phase(rate, self.op_dt_ms)
        return torch.cat([phase_sin_cos(phi), spike_clock(phi, rate, e.spike_phase)], dim=1)

    def operator(self, features: torch.Tensor, stim_pA: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The FNO on its grid: (normalised voltage (B, T_op), phi (B, T_op) or None). With rendering the
        voltage is the subthreshold one (APs cut out) and phi = the prior + the FNO's correction (the prior
        alone with render.spike_times 'prior'; with 'prior_with_rebound' the correction only until the drive
        first crosses rheobase); the
        stimulus (B, T) on the output grid is averaged over each operator step."""
        B, T = stim_pA.shape
        c, k = self.coarse, self.fold
        stim_op = operator_grid_mean(stim_pA, c)
        T_op = T // c
        stim = self.in_normalizer.transform(stim_op)
        stim_fold = stim.reshape(B, T_op // k, k).transpose(1, 2)  # polyphase fold: j*k + r -> (r, j)
        emb = feature_embedding(features, self.embedding_cfg)  # (B, C), constant in time
        prior, phase_fold = None, None
        if self.embedding_cfg.fi_phase:
            rate, prior = self.prior_phase(features, stim_op)
            s = self.phase_stride  # the channels at every s-th operator sample (FNOConfig.phase_stride)
            ph = self.phase_channels(rate[:, ::s], prior[:, ::s])  # (a step-1 slice is the same view)
            P, ks = ph.shape[1], k // s  # (B, P, T_op / s), folded to P k/s channels on the FNO grid
            phase_fold = ph.reshape(B, P, T_op // k, ks).permute(0, 1, 3, 2).reshape(B, P * ks, T_op // k)
        # input channels [stim (k), embedding (C), phase (P k / stride)] (embedding.embed_inputs' layout)
        raw = fno_with_constant_channels(self.fno, stim_fold, emb, phase_fold)  # (B, n_out k, T_op/k)
        out = raw[:, :k].transpose(1, 2).reshape(B, T_op)  # (B, k, T/k) -> (B, T)
        if self.output_blur:  # [1, 2, 1]/4 with edge samples repeated (config.FNOConfig.output_blur)
            pad = torch.cat([out[:, :1], out, out[:, -1:]], dim=1)
            out = 0.25 * pad[:, :-2] + 0.5 * pad[:, 1:-1] + 0.25 * pad[:, 2:]
        if self.render_cfg is None:
            return out, None
        if prior is None:
            _rate, prior = self.prior_phase(features, stim_op)
        if self.spike_times == "prior":  # APs where the learned prior puts them
            return out, prior
        corr = raw[:, k:].transpose(1, 2).reshape(B, T_op)
        if self.spike_times == "prior_with_rebound":  # the FNO's correction only until the drive crosses rheobase
            corr = corr * self.before_suprathreshold(features, stim_op)
        return out, prior + corr

    def before_suprathreshold(self, features: torch.Tensor, stim_op: torch.Tensor) -> torch.Tensor:
        """(B, T_op) 1.0 until the drive first exceeds the neuron's rheobase (I_thr_pA), then 0.0."""
        names = self.embedding_cfg.feature_names
        on = stim_op > features[:, names.index("I_thr_pA"), None]
        return (torch.cumsum(on.to(torch.int32), dim=-1) == 0).to(stim_op.dtype)

    def render(self, features: torch.Tensor, stim_pA: torch.Tensor, v_op_mV: torch.Tensor,
               phi: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Output-grid voltage (mV): the subthreshold voltage interpolated, plus an AP from the decoder at
        every passage of phi through k + spike_phase (noble/operator/render.py). out: a contiguous (B, T) tensor
        to draw into (inference; Surrogate.predict's own array), instead of a new one."""
        rc = self.render_cfg
        base = upsample_linear(v_op_mV, self.coarse, out=out)
        spikes = phase_spikes(phi, self.op_dt_ms, self.embedding_cfg.spike_phase, rc.isi_cap_ms)
        # The phase targets hold no AP whose window [-pre_ms, +post_ms] overruns the trace (train_render.
        # build_targets), so the phase is unconstrained there: a passage in the last post_ms (where the FFT's
        # wrap-around bends it) drew a phantom AP at the trace's end in ~10 % of traces. Drop those as training did.
        end_ms = phi.shape[1] * self.op_dt_ms
        keep = (spikes.time_ms > rc.pre_ms) & (spikes.time_ms < end_ms - rc.post_ms)
        names = self.embedding_cfg.feature_names
        if rc.offset_guard_ms is not None and "I_thr_pA" in names and len(spikes.time_ms):
            # no AP once a depolarising step has ended and the drive sits below rheobase (config.offset_guard_ms)
            guard = torch.full_like(features[:, 0], rc.offset_guard_ms)
            if "tau_m_ms" in names:
                guard = torch.maximum(guard, features[:, names.index("tau_m_ms")])
            at = (spikes.time_ms / self.dt_ms).round().long().clamp(0, stim_pA.shape[1] - 1)
            keep = keep & ~quiet_at(stim_pA, features[:, names.index("I_thr_pA")], self.dt_ms, guard, spikes.trace, at)
        if not bool(keep.all()):
            spikes = Spikes(spikes.trace[keep], spikes.time_ms[keep], spikes.index[keep], spikes.isi_ms[keep])
        if len(spikes.time_ms) == 0:
            return base
        e = self.embedding_cfg
        lows = torch.as_tensor(e.lows, dtype=features.dtype, device=features.device)
        highs = torch.as_tensor(e.highs, dtype=features.dtype, device=features.device)
        # the drive at each spike, normalised there (an affine map: the same as sampling the normalised grid)
        drive = self.in_normalizer.transform(sample_at(stim_pA, spikes.trace, spikes.time_ms, self.dt_ms)[None])[0]
        x = decoder_inputs(normalise(features, lows, highs)[spikes.trace], spikes.isi_ms, drive,
                           spikes.index.to(features.dtype), rc)
        ap = self.decoder(x) * self.ap_scale_mV + rc.ap_offset_mV
        return paste_aps(base, spikes, ap, self.dt_ms, rc, inplace=out is not None or not torch.is_grad_enabled())

    def forward(self, features: torch.Tensor, stim_pA: torch.Tensor) -> torch.Tensor:
        v_op, phi = self.operator(features, stim_pA)
        if phi is None:
            return v_op
        return self.normalise_v(self.render(features, stim_pA, self.to_mV(v_op), phi))

    def voltage_mV(self, features: torch.Tensor, stim_pA: torch.Tensor, out: torch.Tensor | None = None
                   ) -> torch.Tensor:
        """to_mV(forward(...)) without normalising the rendered output grid only to undo it (two passes over
        every output sample); equal to float rounding. out: a contiguous (B, T) float32 tensor to write it into
        (then returned)."""
        v_op, phi = self.operator(features, stim_pA)
        if phi is None:
            v = self.to_mV(v_op)
            return v if out is None else out.copy_(v)
        return self.render(features, stim_pA, self.to_mV(v_op), phi, out=out)

    def to_mV(self, v_norm: torch.Tensor) -> torch.Tensor:
        return self.out_normalizer.inverse_transform(v_norm)

    def normalise_v(self, v_mV: torch.Tensor) -> torch.Tensor:
        return self.out_normalizer.transform(v_mV)


class Surrogate:
    """A loaded checkpoint: config (SurrogateConfig), card (dict), name, and the network in eval mode.
    `predict` runs in chunks of `batch_size` traces: on CPU chunks of 8-64 are ~2.5x faster per trace
    than one 256-trace chunk (activations stay in cache; measured on the hh_fs checkpoint)."""

    def __init__(self, net: NobleOperator, config: SurrogateConfig, card: dict[str, Any] | None = None,
                 path: Path | None = None, device: str = "cpu", batch_size: int = 32) -> None:
        self.net = net.to(device).eval()
        self.config = config
        self.card = card or {}
        self.path = path
        self.device = device
        self.batch_size = batch_size

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def feature_names(self) -> list[str]:
        return self.config.feature_names

    @property
    def t_ms(self) -> np.ndarray:
        return self.config.t_ms

    def check_features(self, features: np.ndarray) -> np.ndarray:
        """(B, F) float array inside the trained ranges; ValueError naming the feature and range otherwise."""
        feats = np.atleast_2d(np.asarray(features, dtype=np.float64))
        names = self.config.feature_names
        if feats.ndim != 2 or feats.shape[1] != len(names):
            raise ValueError(f"features must be (B, {len(names)}) ordered as {names}, got shape {feats.shape}")
        for j, name in enumerate(names):
            lo, hi = self.config.feature_ranges[name]
            col = feats[:, j]
            tol = 1e-9 * max(1.0, abs(lo), abs(hi))
            bad = ~np.isfinite(col) | (col < lo - tol) | (col > hi + tol)
            if bad.any():
                unit = self.config.feature_units[j]
                raise ValueError(f"feature {name!r}={col[bad][0]:g} {unit} is outside the trained range "
                                 f"[{lo:g}, {hi:g}] {unit}")
        return feats

    def step_stimulus(self, amplitude_pA: float) -> np.ndarray:
        """(T,) long-square step of the trained protocol (onset, duration) on the surrogate's grid."""
        p = self.config.stimulus
        t = self.t_ms
        on = (t >= p.start_ms - 1e-9) & (t < p.end_ms - 1e-9)
        return (float(amplitude_pA) * on).astype(np.float32)

    def predict(self, features: np.ndarray, stim_pA: np.ndarray, *, check_range: bool = True) -> np.ndarray:
        """v_mV (B, T) float32 for feature vectors (B, F) and stimuli (B, T) on the surrogate grid.
        `check_range=False` lets evaluation probe unseen neurons just outside the trained range."""
        if check_range:
            feats = self.check_features(features)
        else:
            feats = np.atleast_2d(np.asarray(features, dtype=np.float64))
        stim = np.atleast_2d(np.asarray(stim_pA, dtype=np.float32))
        if stim.shape[1] != self.config.n_time:
            raise ValueError(f"stim_pA must have {self.config.n_time} samples at dt {self.config.dt_ms} ms, "
                             f"got {stim.shape[1]}")
        if stim.shape[0] == 1 and feats.shape[0] > 1:
            stim = np.repeat(stim, feats.shape[0], axis=0)
        if stim.shape[0] != feats.shape[0]:
            raise ValueError(f"{feats.shape[0]} feature vectors but {stim.shape[0]} stimuli")
        out = np.empty(stim.shape, dtype=np.float32)
        # on CPU the network draws each chunk into `out` itself (no second copy of 24000-sample traces)
        in_place = self.device == "cpu" and all(p.dtype == torch.float32 for p in self.net.parameters())
        with torch.inference_mode():
            for a in range(0, len(stim), self.batch_size):
                f = torch.as_tensor(feats[a:a + self.batch_size], dtype=torch.float32, device=self.device)
                s = torch.as_tensor(stim[a:a + self.batch_size], device=self.device)
                if in_place:
                    self.net.voltage_mV(f, s, out=torch.from_numpy(out[a:a + self.batch_size]))
                else:
                    out[a:a + self.batch_size] = self.net.voltage_mV(f, s).float().cpu().numpy()
        return out
