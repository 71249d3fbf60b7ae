"""Pydantic configs of the surrogate: what is trained (TrainConfig, from YAML) and what a checkpoint is
(SurrogateConfig, written to config.json). Every number the model needs at inference lives here, so a
checkpoint is loaded from json + safetensors alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..datagen.config import format_validation_error


class EmbeddingConfig(BaseModel):
    """NOBLE's frequency-modulated feature embedding: features normalised to [0, 1] over the training
    population by (x - low) / (high - low), lifted by [sin(2^k pi x), cos(2^k pi x)], k = 0..K-1."""

    model_config = ConfigDict(extra="forbid")
    feature_names: list[str] = Field(default_factory=lambda: ["I_thr_pA", "s_thr_Hz_per_pA"], min_length=1)
    n_frequencies: int = Field(4, ge=1, le=16, description="K")
    fi_phase: bool = Field(False, description=(
        "add the F-I phase channels sin/cos(2 pi phi(t)), phi = integral of the rate the features predict "
        "for the stimulus (noble/operator/phase.py)"))
    fi_rate: Literal["linear", "quadratic"] = Field("linear", description=(
        "the F-I curve behind phi: 'linear' fi_slope (I - I_thr)+ (needs I_thr_pA, fi_slope_Hz_per_pA); "
        "'quadratic' fi_lin x + fi_quad x^2, x = (I - I_thr)+ (needs I_thr_pA, fi_lin_Hz_per_pA, "
        "fi_quad_Hz_per_pA2)"))
    fit_phase_warp: bool = Field(False, description=(
        "fit phase_warp (spike-frequency adaptation and onset delay of the population) on the training "
        "models' spike times at training time"))
    phase_warp: list[float] | None = Field(None, min_length=4, max_length=4, description=(
        "[A, tau_ms, delay_ms, gain]: phi grows at rate(I) * gain * (1 + A exp(-(s - delay)/tau)) once s, the "
        "time since the drive went suprathreshold, passes delay; None = at rate(I) from the drive's onset"))
    first_spike_latency: list[float] | None = Field(None, min_length=2, max_length=2, description=(
        "[a_ms, b]: the phase's first spike comes at L = a r^(-b) after the drive turns on (r the F-I rate); "
        "fitted with phase_warp when fit_first_spike_latency"))
    fit_first_spike_latency: bool = Field(False, description=(
        "with fit_phase_warp: fit first_spike_latency on the training steps' first spikes, then the warp on "
        "the later spikes (spike_phase is then fixed at 0.5)"))
    spike_phase: float = Field(0.0, ge=-1, le=1, description=(
        "c: the training spikes sit at phi = k + c (fitted with phase_warp); where spike_clock puts its spikes"))
    spike_clock: bool = Field(False, description=(
        "add the spike-clock channels exp(-t_since/tau), exp(-t_until/tau), tau = 1 and 8 ms, t_since/t_until = "
        "time since the last / until the next spike the phase predicts (phase.spike_clock): an AP is ~1 ms wide, "
        "which sin/cos(2 pi phi) resolves at 100 Hz but not at 5 Hz (a 1 ms step moves them by 0.03)"))
    # Normalisers, one [low, high] per feature (filled from the training population at training time).
    lows: list[float] | None = None
    highs: list[float] | None = None

    @property
    def n_channels(self) -> int:
        return 2 * self.n_frequencies * len(self.feature_names)

    @model_validator(mode="after")
    def _lengths(self) -> "EmbeddingConfig":
        for name in ("lows", "highs"):
            val = getattr(self, name)
            if val is not None and len(val) != len(self.feature_names):
                raise ValueError(f"embedding.{name}: need one value per feature ({len(self.feature_names)})")
        if self.spike_clock and not self.fi_phase:
            raise ValueError("embedding.spike_clock needs fi_phase")
        if self.fi_phase:
            from .phase import RATE_FEATURES

            need = RATE_FEATURES[self.fi_rate]
            if not set(need) <= set(self.feature_names):
                raise ValueError(f"embedding.fi_phase with fi_rate {self.fi_rate!r} needs the features {list(need)}")
        if self.lows is not None and self.highs is not None:
            for f, lo, hi in zip(self.feature_names, self.lows, self.highs):
                if not hi > lo:
                    raise ValueError(f"embedding: feature {f!r} has high {hi} <= low {lo}")
        return self


class FNOConfig(BaseModel):
    """Arguments of `neuralop.models.FNO` for a 1-D operator (time axis)."""

    model_config = ConfigDict(extra="forbid")
    n_modes: int = Field(256, ge=4, le=4096, description="total Fourier modes (rfft keeps n_modes//2+1)")
    hidden_channels: int = Field(32, ge=4, le=256)
    n_layers: int = Field(4, ge=1, le=12)
    lifting_channel_ratio: float = Field(2, gt=0, le=8)
    projection_channel_ratio: float = Field(2, gt=0, le=8)
    channel_mlp_expansion: float = Field(0.5, gt=0, le=4)
    positional_embedding: Literal["grid"] | None = Field("grid", description="add a time channel in [0, 1]")
    domain_padding: float | None = Field(None, ge=0, le=1)
    time_fold: int = Field(1, ge=1, le=32, description=(
        "space-to-depth factor: the FNO runs on a grid `time_fold` times coarser whose channels are the "
        "polyphase components of the fine grid (stimulus in, voltage out), so traces keep the full dt "
        "(honest spike peaks) at a fraction of the cost; 1 = plain FNO on the fine grid"))
    phase_stride: int = Field(1, ge=1, le=32, description=(
        "the F-I phase channels enter the FNO at every `phase_stride`-th sample of the operator grid (they must "
        "divide time_fold): sin/cos of the phase and the spike clock are smooth on the folded grid's scale, and "
        "on a 16-fold grid they were 96 of the lifting's 113 input channels; 1 = every sample"))
    output_blur: bool = Field(False, description=(
        "a fixed [1, 2, 1]/4 filter on the fine-grid output: removes the sample-to-sample zigzag that "
        "interleaving the polyphase output channels leaves (the 1-D 'checkerboard' of sub-pixel upsampling, "
        "fixed by a blur after the pixel shuffle as in Sugawara et al. 2019), which made spike tops cross "
        "-20 mV twice; trained through, so the network learns the spike shape behind the filter"))

    @model_validator(mode="after")
    def _stride_divides_fold(self) -> "FNOConfig":
        if self.time_fold % self.phase_stride:
            raise ValueError(f"fno.phase_stride={self.phase_stride} must divide fno.time_fold={self.time_fold}")
        return self


class PhaseNetConfig(BaseModel):
    """A learned, per-neuron version of the F-I phase prior (noble/operator/phase_net.py): an MLP of the normalised
    features and the drive corrects the prior's latency, steady rate and onset warp; fitted on the training
    spikes' times before the FNO trains (so the FNO corrects less)."""

    model_config = ConfigDict(extra="forbid")
    hidden: int = Field(64, ge=4, le=1024, description="MLP width")
    layers: int = Field(3, ge=1, le=6, description="MLP hidden layers")
    max_log_gain: float = Field(2.0, gt=0, le=5, description=(
        "each correction stays within +-this (a soft bound: max tanh(c / max)); 2 = factors e^-2..e^2"))
    steps: int = Field(10000, ge=0, le=1_000_000, description="training steps (Adam, batches of training traces)")
    batch: int = Field(64, ge=1, le=4096, description="traces per step (all their spikes)")
    lr: float = Field(3e-3, gt=0, le=1)
    huber_ms: float = Field(1.0, gt=0, description="the spike-time loss is Huber with this knee (ms)")
    early_spikes: float = Field(5.0, gt=0, description=(
        "spike k of a train weighs 1 / (1 + k / early_spikes) (each trace weighs the same): the first spikes, "
        "where the drive's onset sets the timing, count fully, later ones less"))


class APRenderConfig(BaseModel):
    """Spike rendering (noble/operator/render.py): the FNO draws the subthreshold voltage (APs cut out) and a
    phase phi(t) on a coarse grid; every time phi passes k + spike_phase an AP peaks there, and a small MLP
    (the AP decoder) draws it on the fine output grid from the neuron's features, the preceding ISI, the
    drive and the voltage it takes off from. APs keep their height and width at any rate; the output grid
    can be finer than the operator's."""

    model_config = ConfigDict(extra="forbid")
    coarse_dt_ms: float = Field(0.2, gt=0, le=10, description=(
        "the operator's grid (subthreshold voltage and phase); an integer multiple of the output dt_ms"))
    pre_ms: float = Field(0.8, gt=0, le=20, description="the AP window starts this long before the peak")
    post_ms: float = Field(3.5, gt=0, le=50, description="and ends this long after it (past the fast AHP trough)")
    template_dt_ms: float = Field(0.025, gt=0, le=1, description="the AP decoder's own grid (the dataset's dt)")
    blend_ms: float = Field(0.3, gt=0, le=5, description=(
        "the AP cross-fades in from the subthreshold voltage over this much of the window's start"))
    blend_post_ms: float = Field(1.0, gt=0, le=10, description=(
        "and back out over this much of its end (the slow AHP recovery: a longer fade hides a small mismatch "
        "between the operator's trajectory and the AP where the phase and the trajectory disagree)"))
    ap_offset_mV: float = Field(-20.0, description="AP decoder output = (v_mV - ap_offset_mV) / ap_scale_mV")
    hidden: int = Field(128, ge=8, le=2048, description="AP decoder width")
    layers: int = Field(3, ge=1, le=8, description="AP decoder hidden layers")
    isi_cap_ms: float = Field(300.0, gt=0, description="longer ISIs (and the first spike's) enter as this")
    offset_guard_ms: float | None = Field(5.0, gt=0, description=(
        "no AP is drawn later than max(this, the neuron's tau_m_ms) after a depolarising drive falls below its "
        "rheobase (I_thr_pA), while the drive stays between the holding level and I_thr: the membrane relaxes to a "
        "subthreshold level with tau_m and the solver fires nothing new there (held-out: its latest AP after a "
        "step's end 2.9 ms (FS), 4.4 ms (RS), 14.1 ms (LTS, a burst's tail)), but the operator's phase can creep "
        "on past the offset (phantom APs 7-96 ms after it in 4-8 % of held-out traces). After a "
        "hyperpolarisation (rebound) or for a neuron firing at the holding level (I_thr <= holding) nothing is "
        "dropped. None: off"))
    phase_weight: float = Field(1.0, ge=0, description="weight of the phase MSE next to the voltage rel L2")
    phase_tail_cap: float = Field(0.9, gt=0, lt=1, description=(
        "after a trace's last spike the target phase creeps on at the last ISI's pace by at most this much of a "
        "turn (render.phase_target); the next AP fires at 1.0, so 1 - cap is the margin an operator error must "
        "cross to draw a phantom AP after the step (0.9, the first weights: ~8 % of traces; 0.5 from hh_mc_fs)"))
    phase_net: PhaseNetConfig | None = Field(None, description=(
        "learned correction of the F-I phase prior, trained on the spike times before the FNO (None: the "
        "prior as fitted, phase.py)"))
    spike_times: Literal["operator", "prior", "prior_with_rebound"] = Field("operator", description=(
        "where APs are drawn. 'operator': where the FNO's corrected phase passes k + spike_phase. 'prior': where "
        "the (learned) F-I phase prior alone does; the FNO then draws only the subthreshold voltage, trained on "
        "the solver's trajectory time-warped so its spikes sit at the prior's (train_render.warp_to_prior), so "
        "the trajectory and the drawn APs agree by construction. The prior fires only where the drive is above "
        "the neuron's rheobase: no rebound burst after a hyperpolarising step. 'prior_with_rebound': the prior's "
        "phase once the drive has first crossed rheobase, the FNO's corrected phase before that (a "
        "hyperpolarising step and the rebound burst after it, trained on the solver's phase there). Both need "
        "phase_net"))
    decoder_steps: int = Field(3000, ge=0, le=1_000_000, description="AP decoder training steps (Adam)")
    decoder_batch: int = Field(512, ge=1, le=65536)
    decoder_lr: float = Field(2e-3, gt=0, le=1)

    @property
    def n_template(self) -> int:
        return int(round((self.pre_ms + self.post_ms) / self.template_dt_ms)) + 1

    @model_validator(mode="after")
    def _prior_times_need_the_learned_prior(self) -> "APRenderConfig":
        if self.spike_times != "operator" and self.phase_net is None:
            raise ValueError(f"render.spike_times {self.spike_times!r} draws APs from the learned phase prior: "
                             "set render.phase_net")
        return self


class LossConfig(BaseModel):
    """Relative L2 of the voltage (mV) plus terms that keep spikes sharp.

    * `derivative_weight`: relative L2 of the time derivative dv/dt. Spikes carry almost all of the
      derivative's energy, so this term penalises misplaced or blunted upstrokes/downstrokes that a plain
      L2 on voltage (dominated by the long subthreshold stretches) lets the network smear into averages.
    * `spectral_weight`: relative L2 between the Fourier magnitudes |rfft(v)| of prediction and target.
      Blind to spike timing, it rewards a train of sharp spikes at the right RATE even while their phase
      is still wrong, which pulls the network off the smooth 'average trace' that pure L2 prefers when
      timing is uncertain (both L2 terms charge a misplaced spike twice and a missing one once).
    * `sorted_weight`: distance between the SORTED samples of prediction and target (1-D Wasserstein-2
      between their distributions), for v (relative, mV) and for dv/dt (in dv/dt RMS units). Blind to
      timing, it charges a missing or an extra spike once and a misplaced one nothing, so it makes the
      network emit full-height spikes in the right NUMBER (the F-I curve) before the L2 terms have aligned
      them; the dv/dt part demands one steep upstroke and downstroke per spike (no plateaus).
    * `spike_weight`: extra weight on samples where the target is above `spike_threshold_mV` (inside APs).
    * `spike_train_weight`: a normalised van Rossum distance between the spike trains: each trace becomes
      a soft spike indicator sigmoid((v - spike_threshold_mV) / spike_train_width_mV) smoothed by a
      Gaussian of `spike_train_sigma_ms`, and the loss is |a - b|^2 / (|a|^2 + |b|^2 + eps): 0 for the
      same spikes, 1 for disjoint trains. Unlike the voltage L2, whose optimum under spike-time jitter is
      the smooth no-spike average (the 'double penalty'), it rewards a spike that is a few ms off, so it
      pulls spikes toward their targets instead of flattening them.
    """

    model_config = ConfigDict(extra="forbid")
    derivative_weight: float = Field(0.1, ge=0)
    spectral_weight: float = Field(0.0, ge=0)
    sorted_weight: float = Field(0.0, ge=0)
    spike_weight: float = Field(0.0, ge=0)
    spike_threshold_mV: float = -20.0
    spike_train_weight: float = Field(0.0, ge=0)
    spike_train_sigma_ms: float = Field(4.0, gt=0, le=100)
    spike_train_width_mV: float = Field(4.0, gt=0, le=50)


class StimulusProtocol(BaseModel):
    """The stimulus family the surrogate was trained on (long-square steps)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["step"] = "step"
    start_ms: float = Field(100.0, ge=0)
    duration_ms: float = Field(1000.0, gt=0)
    amplitudes_pA: list[float] = Field(default_factory=list)

    @property
    def end_ms(self) -> float:
        return self.start_ms + self.duration_ms


class TrainConfig(BaseModel):
    """Everything `noble train` needs besides the dataset (YAML; see noble/assets/hh_fs/train.yaml)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field("surrogate", pattern=r"^[A-Za-z0-9_.-]+$", max_length=100)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    fno: FNOConfig = Field(default_factory=FNOConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    dt_ms: float = Field(0.2, gt=0, le=10, description="surrogate grid (dataset dt times an integer)")
    holdout_models: int = Field(16, ge=1, description="whole neuron MODELS held out for evaluation")
    validation_models: int = Field(0, ge=0, description=(
        "training models set aside (seeded, whole models) to pick the epoch (train.best_epoch: the lowest "
        "per-amplitude rel L2, times the first-5 spike-time error where the trainer measures it, among epochs with "
        ">= 90 % spike counts within +-1); the held-out models are never used for it. 0 = keep the last epoch"))
    epochs: int = Field(40, ge=1, le=100_000)
    batch_size: int = Field(8, ge=1, le=4096)
    lr: float = Field(3e-3, gt=0, le=1)
    weight_decay: float = Field(1e-5, ge=0)
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: int = Field(1, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    threads: int = Field(2, ge=1, le=256)
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?|mps)$")
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cap (tests); None = full epoch")
    render: APRenderConfig | None = Field(None, description=(
        "draw APs with the AP decoder on the dt_ms grid while the FNO runs on render.coarse_dt_ms "
        "(noble/operator/render.py); None = the FNO draws the whole trace on dt_ms"))
    init_from: str | None = Field(None, description=(
        "checkpoint directory whose weights start this run (fine-tuning; same FNO architecture and features)"))


class SurrogateConfig(BaseModel):
    """config.json of a checkpoint: architecture, embedding with its normalisers, output/stimulus
    normalisers, time grid, stimulus protocol, feature names/ranges and the training population."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = 1
    name: str
    family: str
    preset: str | None = None
    feature_names: list[str]
    feature_units: list[str]
    feature_ranges: dict[str, tuple[float, float]] = Field(description="trained range of every feature")
    embedding: EmbeddingConfig
    fno: FNOConfig
    stim_scale_pA: float = Field(..., gt=0, description="stimulus channel = stim_pA / stim_scale_pA")
    v_mean_mV: float
    v_std_mV: float = Field(..., gt=0)
    dt_ms: float = Field(..., gt=0)
    n_time: int = Field(..., ge=2)
    stimulus: StimulusProtocol
    population: list[list[float]] = Field(description="feature vectors of the training models (raw units)")
    density: dict[str, Any] = Field(default_factory=lambda: {"kind": "gaussian_kde", "space": "normalised",
                                                             "bandwidth": "scott", "clip": "range"})
    heldout_model_ids: list[int] = Field(default_factory=list)
    train_model_ids: list[int] = Field(default_factory=list)
    render: APRenderConfig | None = Field(None, description="spike rendering (None: the FNO draws the trace)")
    ap_scale_mV: float = Field(50.0, gt=0, description="AP decoder output = (v_mV - render.ap_offset_mV) / ap_scale_mV")

    @property
    def coarse_factor(self) -> int:
        """Output samples per operator sample (1 without rendering)."""
        return 1 if self.render is None else int(round(self.render.coarse_dt_ms / self.dt_ms))

    @property
    def t_ms(self) -> "Any":
        import numpy as np

        return np.arange(self.n_time) * self.dt_ms

    @property
    def duration_ms(self) -> float:
        return self.n_time * self.dt_ms

    @model_validator(mode="after")
    def _consistent(self) -> "SurrogateConfig":
        if self.embedding.feature_names != self.feature_names:
            raise ValueError("embedding.feature_names must equal feature_names")
        if list(self.feature_ranges) != self.feature_names:
            raise ValueError("feature_ranges must list every feature, in feature_names order")
        if self.render is not None:
            c = self.render.coarse_dt_ms / self.dt_ms
            if abs(c - round(c)) > 1e-6 or round(c) < 1 or self.n_time % (round(c) * self.fno.time_fold):
                raise ValueError(f"render.coarse_dt_ms={self.render.coarse_dt_ms} must be an integer multiple of "
                                 f"dt_ms={self.dt_ms} dividing n_time={self.n_time} with fno.time_fold")
            if not self.embedding.fi_phase:
                raise ValueError("render needs embedding.fi_phase (the operator corrects the F-I phase)")
        return self


def load_train_config(path: str | Path | None) -> TrainConfig:
    """TrainConfig from YAML/JSON (defaults when path is None); ValueError with field-named messages."""
    if path is None:
        return TrainConfig()
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"train config not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"train config {path} must be a mapping")
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc)) from None
