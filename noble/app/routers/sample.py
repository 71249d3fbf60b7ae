"""POST /v1/sample: n synthetic neurons of a surrogate for a stimulus, with summary bands.

Features are drawn from the surrogate's population (or given explicitly), the forward pass is shared with
concurrent requests by the micro-batcher, and the answer is JSON, .npz or NWB by content negotiation.
A stimulus outside the surrogate's trained amplitudes is a 422 naming the field and the range
(`noble.operator.domain`) unless the request sets `extrapolate`; the answer then carries `extrapolated`.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import numpy as np
from fastapi import APIRouter, Header, Request, Response

from ...operator.domain import OutsideTrainedDomain, check_stimulus_domain
from ..deps import AUTH_ERRORS, registry_of, settings_of, store_of
from ..encode import ALT_CONTENT, choose_format, json_response, npz_response, nwb_bytes, nwb_response
from ..errors import ApiError, field_error
from ..schemas import SampleIn, SampleOut, SampleStep
from ..surrogates import LoadedSurrogate, operator_api

router = APIRouter(prefix="/v1", tags=["sample"])

RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    200: {"content": ALT_CONTENT, "description": "traces and bands (JSON, or .npz / NWB on request)"},
    404: {"description": "no such surrogate (or none loaded)"},
    406: {"description": "none of the Accept types can be produced"},
}


def _features_arg(body: SampleIn, loaded: LoadedSurrogate) -> np.ndarray | dict[str, float] | None:
    """(n, F) explicit features, a dict of fixed ones (the rest drawn conditionally), or None (all drawn)."""
    if body.features is not None and body.fixed_features is not None:
        raise field_error(["body", "fixed_features"], "give either features or fixed_features, not both")
    if body.fixed_features is not None:
        names = loaded.feature_names
        ranges = loaded.feature_ranges()
        for key, v in body.fixed_features.items():
            if key not in names:
                raise field_error(["body", "fixed_features", key], f"unknown feature; this surrogate takes {names}")
            lo, hi = ranges[key]
            if not lo <= v <= hi:
                raise field_error(["body", "fixed_features", key],
                                  f"{v} is outside the surrogate's trained range [{lo}, {hi}] (no extrapolation)")
        return dict(body.fixed_features)
    if body.features is None:
        return None
    if len(body.features) != body.n_samples:
        raise field_error(["body", "features"], f"give one feature vector per neuron: {len(body.features)} "
                                                f"vectors for n_samples={body.n_samples}")
    names = loaded.feature_names
    ranges = loaded.feature_ranges()
    out = np.empty((len(body.features), len(names)), dtype=np.float64)  # float32 could leave the range
    for k, row in enumerate(body.features):
        missing = [n for n in names if n not in row]
        unknown = [n for n in row if n not in names]
        if missing or unknown:
            raise field_error(["body", "features", k], f"feature names must be exactly {names}"
                              + (f"; missing {missing}" if missing else "") + (f"; unknown {unknown}" if unknown else ""))
        for j, name in enumerate(names):
            lo, hi = ranges[name]
            v = float(row[name])
            if not lo <= v <= hi:
                raise field_error(["body", "features", k, name],
                                  f"{v} is outside the surrogate's trained range [{lo}, {hi}] (no extrapolation)")
            out[k, j] = v
    return out


def _spike_csr(spike_times_ms: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Spike times as CSR, as the datasets store them: neuron k's spikes are times[index[k]:index[k + 1]]."""
    index = np.zeros(len(spike_times_ms) + 1, dtype=np.int64)
    index[1:] = np.cumsum([len(s) for s in spike_times_ms])
    flat = np.concatenate([np.asarray(s, dtype=np.float64) for s in spike_times_ms]) if spike_times_ms else np.empty(0)
    return {"spike_times_ms": flat, "spike_index": index}


def _stimulus(body: SampleIn, loaded: LoadedSurrogate) -> tuple[float | np.ndarray, list[str]]:
    """A step amplitude (the surrogate renders its own protocol window) or a waveform on its grid, and the
    warnings of a stimulus outside the trained amplitudes (422 there unless body.extrapolate)."""
    stim = body.stimulus
    if isinstance(stim, SampleStep):
        out: float | np.ndarray = float(stim.amplitude_pA)
    else:
        if len(stim.values_pA) != loaded.n_time:
            raise field_error(["body", "stimulus", "values_pA"],
                              f"need exactly n_time={loaded.n_time} samples at dt_ms={loaded.dt_ms} "
                              f"(the surrogate's grid), got {len(stim.values_pA)}")
        if stim.dt_ms is not None and abs(stim.dt_ms - loaded.dt_ms) > 1e-9 * max(1.0, loaded.dt_ms):
            raise field_error(["body", "stimulus", "dt_ms"], f"must equal the surrogate's dt_ms={loaded.dt_ms}")
        out = np.asarray(stim.values_pA, dtype=np.float32)
    try:
        warnings = check_stimulus_domain(loaded.config, out, extrapolate=body.extrapolate)
    except OutsideTrainedDomain as exc:
        raise field_error(["body", *exc.field.split(".")],
                          f"{exc.message}; send \"extrapolate\": true to sample there anyway") from None
    return out, warnings


def _output_slice(body: SampleIn, loaded: LoadedSurrogate) -> slice:
    """The samples body.window_ms and body.output_dt_ms ask for (422 naming the field otherwise)."""
    dt, n = loaded.dt_ms, loaded.n_time
    step = 1
    if body.output_dt_ms is not None:
        ratio = body.output_dt_ms / dt
        step = int(round(ratio))
        if step < 1 or abs(ratio - step) > 1e-6:
            raise field_error(["body", "output_dt_ms"], f"must be an integer multiple of the surrogate's dt_ms={dt}")
    if body.window_ms is None:
        return slice(0, n, step)
    a, b = body.window_ms
    duration = n * dt
    if not 0 <= a < b <= duration + 1e-9:
        raise field_error(["body", "window_ms"], f"need 0 <= start < end <= {duration:g} ms (the trace), got [{a}, {b}]")
    return slice(int(np.ceil(a / dt - 1e-9)), min(int(np.ceil(b / dt - 1e-9)), n), step)


@router.post("/sample", response_model=SampleOut, responses=RESPONSES,
             summary="Sample n neurons of a surrogate for a stimulus (traces + summary bands)")
async def sample(request: Request, body: SampleIn, accept: str | None = Header(None)) -> Response:
    fmt = choose_format(accept)
    settings = settings_of(request)
    registry = registry_of(request)
    loaded = registry.get(body.surrogate)
    if loaded is None and body.surrogate:
        loaded = await registry.load_trained(body.surrogate, store_of(request), settings.data_dir)
    if loaded is None:
        which = body.surrogate or "default"
        raise ApiError(404, f"surrogate {which!r} is not loaded; loaded: {sorted(registry.items)}"
                       + (f"; errors: {registry.errors}" if registry.errors else ""))
    if body.n_samples > settings.sample_max_n:
        raise ApiError(413, f"n_samples={body.n_samples} exceeds the limit of {settings.sample_max_n} "
                            "(NOBLE_SAMPLE_MAX_N)")
    feats = _features_arg(body, loaded)
    stimulus, warnings = _stimulus(body, loaded)
    out = _output_slice(body, loaded)
    extrapolated = bool(warnings)
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    op = operator_api()
    if op is None:  # pragma: no cover - registry would be empty
        raise ApiError(404, "no surrogate API available")
    loop = asyncio.get_running_loop()
    view = registry.view(loaded, loop)
    try:
        res = await loop.run_in_executor(request.app.state.sample_executor,
                                         lambda: op.sample(view, stimulus, body.n_samples, seed, features=feats))
    except ValueError as exc:
        raise ApiError(422, [{"loc": ["body"], "msg": str(exc)[:2000], "type": "value_error"}]) from None

    v = np.asarray(res.v_mV, dtype=np.float32)[:, out]
    wave = np.asarray(res.stim_pA, dtype=np.float32)[out]
    dt_out, t0 = loaded.dt_ms * out.step, out.start * loaded.dt_ms
    start_ms, end_ms = (float(x) for x in res.window_ms)
    is_step = isinstance(body.stimulus, SampleStep)
    amp = float(body.stimulus.amplitude_pA) if isinstance(body.stimulus, SampleStep) else float(np.max(np.abs(wave)))
    f = np.asarray(res.features, dtype=np.float64)
    bands = {k: np.asarray(res.bands[k], dtype=np.float32)[out] for k in ("mean", "q05", "q50", "q95")}
    counts = np.asarray(res.spike_counts, dtype=np.int64)
    lat = np.asarray(res.first_spike_latency_ms, dtype=np.float64)
    name = f"noble-sample-{loaded.name}-seed{seed}"
    if fmt == "npz":
        return npz_response({"t_ms": t0 + np.arange(v.shape[1]) * dt_out, "v_mV": v, "stim_pA": wave,
                             "features": f, "feature_names": np.array(loaded.feature_names),
                             **{f"band_{k}": b for k, b in bands.items()}, "spike_counts": counts,
                             "first_spike_latency_ms": lat, "seed": np.int64(seed), "dt_ms": dt_out, "t0_ms": t0,
                             **_spike_csr(res.spike_times_ms),
                             "extrapolated": np.bool_(extrapolated), "warnings": np.array(warnings, dtype=str)},
                            name)
    if fmt == "nwb":
        per_trace = [{"surrogate": loaded.name, "seed": seed,
                      "features": {n: float(f[k, j]) for j, n in enumerate(loaded.feature_names)}}
                     for k in range(v.shape[0])]
        content = await asyncio.to_thread(
            nwb_bytes, v, wave, dt_out, start_ms - t0, end_ms - t0, amp,
            {"surrogate": loaded.name, "seed": seed, "source": "noble /v1/sample", "extrapolated": extrapolated,
             "warnings": warnings}, per_trace,
            "Long Square" if is_step else "noble waveform", t0)
        return nwb_response(content, name)
    payload = {
        "surrogate": loaded.name, "seed": seed, "n_samples": int(v.shape[0]), "dt_ms": dt_out,
        "n_time": int(v.shape[1]), "t0_ms": t0, "stim_pA": wave, "feature_names": loaded.feature_names,
        "features": f, "bands": bands, "spike_counts": counts, "first_spike_latency_ms": lat,
        "v_mV": v if body.include_traces else None,
        "spike_times_ms": [np.round(np.asarray(s, dtype=np.float64), 3).tolist() for s in res.spike_times_ms],
        "extrapolated": extrapolated, "warnings": warnings,
    }
    return json_response(payload)
