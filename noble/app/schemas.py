"""Request and response models of the HTTP API, with limits and units in the field names.

Every field is bounded here (422 naming the field past a bound); limits that depend on the server's
configuration (NOBLE_SAMPLE_MAX_N, NOBLE_SIMULATE_MAX_NEURON_MS, ...) are checked in the routers (413).
Strict JSON: NaN and Infinity are refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from ..datagen.config import DatasetConfig
from ..datagen.stimuli import Stimulus
from ..operator.targets import TargetResult

NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,100}$"
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
HARD_MAX_SAMPLES = 4096
HARD_MAX_WAVEFORM = 200_000
HARD_MAX_NEURONS = 1024

Finite = Annotated[float, Field(allow_inf_nan=False)]
FeatureValue = Annotated[float, Field(ge=-1e9, le=1e9, allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# ---- /v1/models ------------------------------------------------------------------------------------------
class ParameterOut(BaseModel):
    name: str
    unit: str
    default: float
    low: float
    high: float
    description: str = ""
    variability: str = "fixed"


class FamilyOut(BaseModel):
    name: str
    description: str
    parameters: list[ParameterOut]
    presets: dict[str, dict[str, float]]
    default_preset: str


class SurrogateOut(BaseModel):
    name: str
    default: bool
    family: str | None = None
    preset: str | None = None
    cell_class: str | None = None
    feature_names: list[str]
    feature_units: list[str]
    feature_ranges: dict[str, list[float]] = Field(description="[low, high] of every feature the surrogate was trained on")
    dt_ms: float
    n_time: int
    duration_ms: float
    stimulus_start_ms: float
    stimulus_duration_ms: float
    stimulus_kinds: list[str]
    trained_amplitudes_pA: list[float] = Field(
        default_factory=list, description="the step amplitudes the surrogate was trained on, sorted")
    amplitude_range_pA: list[float] | None = Field(
        None, min_length=2, max_length=2,
        description="[low, high] of trained_amplitudes_pA: /v1/sample refuses a step amplitude outside it (and a "
                    "waveform value outside it widened to 0 pA) unless extrapolate is true; null if unrecorded")
    heldout_metrics: dict[str, Any] = Field(description="metrics on held-out neurons, from the model card")
    speed: dict[str, Any] | None = Field(None, description=(
        "traces/s of the surrogate and of Brian2 on the same traces, and their ratios (benchmarks/surrogate.py, "
        "from the model card; null where not measured)"))
    targets: list[TargetResult] | None = Field(None, description=(
        "the held-out targets (noise-free Brian2, depolarising steps): each figure, its bound, met or not, and the "
        "factor it misses by (`noble evaluate --update-card`; null where the card has no such evaluation)"))
    card: dict[str, Any]


class ModelsOut(BaseModel):
    families: list[FamilyOut]
    surrogates: list[SurrogateOut]
    default_surrogate: str | None
    surrogate_errors: list[str] = Field(default_factory=list)


class MemberOut(BaseModel):
    member: int = Field(description="row of the population")
    model_id: int | None = Field(description="the dataset's model id (null when the population predates ids)")
    heldout: bool = Field(description="held out of training (the surrogate never saw this neuron)")
    features: dict[str, float] = Field(description="the surrogate's features of this neuron (for /v1/sample)")
    params: dict[str, float] = Field(description="the solver parameters of this neuron (for /v1/simulate)")


class PopulationOut(BaseModel):
    surrogate: str
    family: str
    preset: str | None
    n_members: int
    n_inside_ranges: int = Field(description="members whose features lie inside the trained ranges")
    n_heldout: int
    heldout_known: bool = Field(description="false: the population carries no model ids, none is marked held out")
    members: list[MemberOut]


# ---- /v1/sample ------------------------------------------------------------------------------------------
class SampleStep(Strict):
    """A step ('long square') of the surrogate's own protocol window (see /v1/models)."""

    kind: Literal["step"] = "step"
    amplitude_pA: float = Field(..., ge=-5000.0, le=5000.0)


class SampleWaveform(Strict):
    """An arbitrary stimulus sampled on the surrogate's grid: exactly n_time values at its dt_ms."""

    kind: Literal["waveform"] = "waveform"
    values_pA: list[Annotated[float, Field(ge=-1e5, le=1e5)]] = Field(..., min_length=2, max_length=HARD_MAX_WAVEFORM)
    dt_ms: float | None = Field(None, gt=0.0, le=1000.0, description="must equal the surrogate's dt_ms if given")


SampleStimulus = Annotated[Union[SampleStep, SampleWaveform], Field(discriminator="kind")]


class SampleIn(Strict):
    surrogate: str | None = Field(None, pattern=NAME_PATTERN,
                                  description="name from /v1/models, or job-<id> of a succeeded train job; "
                                              "the default surrogate if omitted")
    n_samples: int = Field(16, ge=1, le=HARD_MAX_SAMPLES)
    stimulus: SampleStimulus
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="omit for a random seed (echoed back)")
    features: list[dict[str, FeatureValue]] | None = Field(
        None, min_length=1, max_length=HARD_MAX_SAMPLES,
        description="explicit feature vectors (one per neuron, names from /v1/models) instead of sampling")
    fixed_features: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,100}$")], FeatureValue] | None = Field(
        None, min_length=1, max_length=64,
        description="hold these features at the given values and draw the others from the population "
                    "conditioned on them (exclusive with `features`)")
    include_traces: bool = Field(True, description="False: bands and summaries only")
    output_dt_ms: float | None = Field(None, gt=0, le=10, description=(
        "return traces, bands and stimulus every output_dt_ms (an integer multiple of the surrogate's dt_ms; "
        "instantaneous samples, so an AP peak between two samples is lower than drawn); spike counts, times and "
        "latencies are always measured at the full grid. Omit for the full grid"))
    window_ms: tuple[float, float] | None = Field(None, description=(
        "[start, end) in ms of the trace to return (t0_ms in the answer is its start); omit for the whole trace"))
    extrapolate: bool = Field(False, description=(
        "True: accept a stimulus outside the surrogate's trained amplitudes (amplitude_range_pA in /v1/models; "
        "422 otherwise); the response then says extrapolated=true. Features are always range-checked"))

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={
        "examples": [{"n_samples": 16, "stimulus": {"kind": "step", "amplitude_pA": 200}, "seed": 1}]})


class BandsOut(BaseModel):
    mean: list[float | None]
    q05: list[float | None]
    q50: list[float | None]
    q95: list[float | None]


class SampleOut(BaseModel):
    surrogate: str
    seed: int
    n_samples: int
    dt_ms: float
    n_time: int
    t0_ms: float = 0.0
    stim_pA: list[float | None]
    feature_names: list[str]
    features: list[list[float | None]]
    bands: BandsOut
    spike_counts: list[int]
    first_spike_latency_ms: list[float | None]
    v_mV: list[list[float | None]] | None = Field(None, description="(n_samples, n_time); null if include_traces=false")
    spike_times_ms: list[list[float]] = Field(default_factory=list, description="per neuron, the time of every AP "
                                                                               "peak in the trace (eFEL, -20 mV)")
    extrapolated: bool = Field(False, description="the stimulus left the trained amplitudes (only with extrapolate)")
    warnings: list[str] = Field(default_factory=list, description="why the traces may be unreliable")


# ---- /v1/simulate ----------------------------------------------------------------------------------------
class SimVariability(Strict):
    cv: float = Field(0.0, ge=0.0, le=1.0, description="log-normal CV of conductances / time constants")
    sd_potential_mV: float = Field(0.0, ge=0.0, le=20.0)


class SimNoise(Strict):
    sigma_pA: float = Field(0.0, ge=0.0, le=1000.0)
    tau_ms: float = Field(5.0, gt=0.0, le=1000.0)


class SimulateIn(Strict):
    family: str = Field(..., pattern=r"^[a-z0-9_]{1,32}$", description="a family from /v1/models (hh, lif, ...)")
    preset: str | None = Field(None, pattern=NAME_PATTERN)
    overrides: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,64}$")], Finite] = Field(
        default_factory=dict, max_length=64, description="parameter values replacing the preset's")
    params: list[dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,64}$")], Finite]] | None = Field(
        None, min_length=1, max_length=HARD_MAX_NEURONS,
        description="explicit per-neuron parameter overrides (one dict per neuron); sets n_neurons")
    n_neurons: int = Field(1, ge=1, le=HARD_MAX_NEURONS)
    variability: SimVariability = Field(default_factory=SimVariability)
    stimulus: Stimulus
    duration_ms: float = Field(1000.0, gt=0.0, le=1e6)
    dt_ms: float = Field(0.025, ge=0.001, le=1.0, description="integration step")
    record_dt_ms: float = Field(0.1, ge=0.001, le=10.0, description="sampling step of the returned traces")
    noise: SimNoise = Field(default_factory=SimNoise)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    include_features: bool = Field(False, description="eFEL features of every trace")

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [
        {"family": "lif", "n_neurons": 2, "duration_ms": 150.0, "dt_ms": 0.1, "record_dt_ms": 0.1,
         "stimulus": {"kind": "step", "amplitude_pA": 300.0, "start_ms": 20.0, "duration_ms": 100.0},
         "variability": {"cv": 0.1, "sd_potential_mV": 1.0}, "seed": 1}]})


class SimulateOut(BaseModel):
    family: str
    preset: str
    n_neurons: int
    dt_ms: float
    n_time: int
    t0_ms: float = 0.0
    param_names: list[str]
    param_units: list[str]
    params: list[list[float]]
    stim_pA: list[float]
    v_mV: list[list[float | None]]
    spike_times_ms: list[list[float]]
    spike_counts: list[int]
    first_spike_latency_ms: list[float | None]
    features: dict[str, list[float | None]] = Field(default_factory=dict)
    wall_s: float


# ---- jobs ------------------------------------------------------------------------------------------------
class DatagenJobIn(Strict):
    kind: Literal["datagen"] = "datagen"
    config: DatasetConfig

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [
        {"kind": "datagen", "config": {
            "name": "tiny-lif", "family": "lif", "n_models": 1, "models_per_shard": 1, "seed": 0,
            "protocol": [{"kind": "step", "amplitude_pA": 300.0, "start_ms": 20.0, "duration_ms": 100.0}],
            "duration_ms": 150.0, "dt_ms": 0.1, "record_dt_ms": 0.1, "rheobase_duration_ms": 100.0,
            "brian_target": "numpy"}}]})


class TrainOptions(Strict):
    """The parts of the operator's TrainConfig that are safe to set over HTTP (the rest keeps its defaults)."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,100}$", description="surrogate name")
    feature_names: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,64}$")]] | None = Field(
        None, min_length=1, max_length=16, description="dataset features the embedding takes")
    n_frequencies: int | None = Field(None, ge=1, le=16)
    n_modes: int | None = Field(None, ge=4, le=4096, description="FNO Fourier modes")
    hidden_channels: int | None = Field(None, ge=4, le=256)
    n_layers: int | None = Field(None, ge=1, le=12)
    dt_ms: float | None = Field(None, gt=0, le=10, description="surrogate grid (a multiple of the dataset dt)")
    holdout_models: int | None = Field(None, ge=1, le=100_000)
    epochs: int | None = Field(None, ge=1, le=10_000)
    batch_size: int | None = Field(None, ge=1, le=1024)
    lr: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    threads: int | None = Field(None, ge=1, le=64)
    max_steps_per_epoch: int | None = Field(None, ge=1, le=1_000_000)

    def train_config(self) -> dict[str, Any]:
        """As a TrainConfig mapping (nested embedding / fno sections)."""
        d = self.model_dump(exclude_none=True)
        out: dict[str, Any] = {}
        emb = {k: d.pop(k) for k in ("feature_names", "n_frequencies") if k in d}
        fno = {k: d.pop(k) for k in ("n_modes", "hidden_channels", "n_layers") if k in d}
        out.update(d)
        if emb:
            out["embedding"] = emb
        if fno:
            out["fno"] = fno
        return out


class TrainJobIn(Strict):
    kind: Literal["train"] = "train"
    dataset_job_id: str = Field(..., pattern=JOB_ID_PATTERN, description="a succeeded datagen job")
    options: TrainOptions = Field(default_factory=TrainOptions)


JobIn = Annotated[Union[DatagenJobIn, TrainJobIn], Field(discriminator="kind")]

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JobKind = Literal["datagen", "train", "fit"]


class ProgressOut(BaseModel):
    done: int
    total: int
    fraction: float


class JobOut(BaseModel):
    id: str
    kind: str
    state: JobState
    progress: ProgressOut
    message: str | None
    errors: list[str]
    attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result_url: str | None = Field(None, description="download when state is succeeded")
    result: dict[str, Any] | None = Field(None, description="summary of the result (no server paths)")
    spec: dict[str, Any]


class JobListOut(BaseModel):
    items: list[JobOut]
    total: int
    limit: int
    offset: int


class ResultFileOut(BaseModel):
    name: str
    bytes: int
    media_type: str
    url: str


class ResultFilesOut(BaseModel):
    job_id: str
    files: list[ResultFileOut]


# ---- health ----------------------------------------------------------------------------------------------
class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str


class ReadyOut(BaseModel):
    ready: bool
    checks: dict[str, Any]
