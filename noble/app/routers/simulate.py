"""POST /v1/simulate: Brian2 ground truth for small requests (bounded neurons x duration, time limit).

Runs in a spawned worker process (see app/simulation.py); the cost is checked before anything runs:
n_neurons x duration_ms over NOBLE_SIMULATE_MAX_NEURON_MS -> 413, n_neurons x duration_ms / dt_ms over
NOBLE_SIMULATE_MAX_NEURON_STEPS -> 413, a duration over NOBLE_MAX_DURATION_MS -> 413.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Header, Request, Response

from ..deps import AUTH_ERRORS, settings_of, sim_pool_of
from ..encode import ALT_CONTENT, choose_format, json_response, npz_response, nwb_bytes, nwb_response
from ..errors import ApiError, field_error
from ..schemas import SimulateIn, SimulateOut
from ..simulation import SimulationBusy, SimulationCrashed, SimulationFailed, SimulationTimeout

router = APIRouter(prefix="/v1", tags=["simulate"])

RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    200: {"content": ALT_CONTENT, "description": "traces (JSON, or .npz / NWB on request)"},
    406: {"description": "none of the Accept types can be produced"},
    429: {"description": "too many simulations queued; retry later"},
    503: {"description": "the simulation worker stopped; retry"},
    504: {"description": "the simulation ran past NOBLE_SIMULATE_TIMEOUT_S"},
}


def build_payload(body: SimulateIn, settings: Any) -> dict[str, Any]:
    """Validate the request against the family and the server limits; the worker's plain-data input."""
    from ...datagen.models import available, get

    if body.family not in available():
        raise field_error(["body", "family"], f"unknown family {body.family!r}; allowed: {available()}")
    fam = get(body.family)
    if body.preset is not None and body.preset not in fam.presets:
        raise field_error(["body", "preset"], f"unknown preset {body.preset!r} for family {body.family!r}; "
                                              f"allowed: {sorted(fam.presets)}")
    names = fam.param_names()
    for key in body.overrides:
        if key not in names:
            raise field_error(["body", "overrides", key], f"unknown parameter for {body.family!r}; allowed: {names}")
    try:
        centre = fam.preset_values(body.preset, body.overrides)
    except ValueError as exc:
        raise field_error(["body", "overrides"], str(exc)) from None
    n = len(body.params) if body.params is not None else body.n_neurons
    if body.params is not None and "n_neurons" in body.model_fields_set and body.n_neurons != n:
        raise field_error(["body", "n_neurons"], f"n_neurons={body.n_neurons} but {n} params rows were given")
    if body.duration_ms > settings.max_duration_ms:
        raise ApiError(413, f"duration_ms={body.duration_ms} exceeds NOBLE_MAX_DURATION_MS={settings.max_duration_ms}")
    if n > settings.simulate_max_neurons:
        raise ApiError(413, f"{n} neurons exceed NOBLE_SIMULATE_MAX_NEURONS={settings.simulate_max_neurons}")
    cost = n * body.duration_ms
    if cost > settings.simulate_max_neuron_ms:
        raise ApiError(413, f"{n} neurons x {body.duration_ms} ms = {cost:g} neuron-ms exceeds "
                            f"NOBLE_SIMULATE_MAX_NEURON_MS={settings.simulate_max_neuron_ms:g}; submit a datagen job")
    ratio = body.record_dt_ms / body.dt_ms
    if ratio < 1 - 1e-9 or abs(ratio - round(ratio)) > 1e-6:
        raise field_error(["body", "record_dt_ms"], f"must be a positive multiple of dt_ms={body.dt_ms}")
    n_rec = int(round(body.duration_ms / body.record_dt_ms))
    if n_rec < 2:
        raise field_error(["body", "duration_ms"], "shorter than two recording samples")
    if n_rec > 2_000_000 or n * n_rec > 20_000_000:
        raise ApiError(413, f"{n} traces x {n_rec} samples is too large an answer; raise record_dt_ms")
    if body.stimulus.end_ms() > body.duration_ms + 1e-9:
        raise field_error(["body", "stimulus"], f"stimulus ends at {body.stimulus.end_ms()} ms, after "
                                                f"duration_ms={body.duration_ms}")
    steps = n * body.duration_ms / body.dt_ms
    if steps > settings.simulate_max_neuron_steps:
        raise ApiError(413, f"{n} neurons x {body.duration_ms / body.dt_ms:.0f} steps = {steps:.3g} neuron-steps exceed "
                            f"NOBLE_SIMULATE_MAX_NEURON_STEPS={settings.simulate_max_neuron_steps:.3g}; "
                            "raise dt_ms or shorten the run")
    rng = np.random.default_rng(body.seed)
    if body.variability.cv > 0 or body.variability.sd_potential_mV > 0:
        params = fam.sample_params(n, rng, body.preset, body.overrides, cv=body.variability.cv,
                                   sd_potential=body.variability.sd_potential_mV)
    else:
        params = np.tile([centre[p] for p in names], (n, 1)).astype(np.float64)
    if body.params is not None:
        for k, row in enumerate(body.params):
            for key, val in row.items():
                if key not in names:
                    raise field_error(["body", "params", k, key], f"unknown parameter; allowed: {names}")
                spec = fam.param_spec(key)
                if not spec.low <= val <= spec.high:
                    raise field_error(["body", "params", k, key],
                                      f"{val} {spec.unit} outside [{spec.low}, {spec.high}] {spec.unit}")
                params[k, names.index(key)] = val
    # Stimulus grid: a multiple of dt no coarser than the recording nor than 0.1 ms (step edges stay sharp).
    stim_dt = body.dt_ms * max(1, int(np.floor(min(body.record_dt_ms, max(body.dt_ms, 0.1)) / body.dt_ms + 1e-9)))
    return {"family": body.family, "params": params, "stimulus_model": body.stimulus,
            "duration_ms": body.duration_ms, "stim_dt_ms": stim_dt, "dt_ms": body.dt_ms,
            "record_dt_ms": body.record_dt_ms, "noise_sigma_pA": body.noise.sigma_pA,
            "noise_tau_ms": body.noise.tau_ms, "seed": body.seed, "features": body.include_features,
            "preset": body.preset or fam.default_preset, "param_names": names,
            "param_units": [fam.param_spec(p).unit for p in names]}


@router.post("/simulate", response_model=SimulateOut, responses=RESPONSES,
             summary="Brian2 ground truth for a small population (bounded, time-limited)")
async def simulate(request: Request, body: SimulateIn, accept: str | None = Header(None)) -> Response:
    fmt = choose_format(accept)
    settings = settings_of(request)
    pool = sim_pool_of(request)
    payload = build_payload(body, settings)
    metrics = request.app.state.metrics
    metrics.simulate_pending.inc()
    t0 = time.perf_counter()
    try:
        out = await pool.run(payload)
    except SimulationBusy as exc:
        raise ApiError(429, str(exc), headers={"Retry-After": "5"}) from None
    except SimulationTimeout as exc:
        raise ApiError(504, str(exc)) from None
    except SimulationCrashed as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": "5"}) from None
    except SimulationFailed as exc:  # the simulator refusing or failing on these inputs
        raise ApiError(422, [{"loc": ["body"], "msg": f"simulation failed: {exc}", "type": "value_error"}]) from None
    finally:
        metrics.simulate_pending.dec()
        metrics.simulate_seconds.observe(time.perf_counter() - t0)

    v = np.asarray(out["v_mV"], dtype=np.float32)
    n = v.shape[0]
    name = f"noble-simulate-{body.family}-seed{body.seed}"
    start, end = out["stim_window_ms"]
    if fmt == "npz":
        counts = np.asarray(out["spike_counts"], dtype=np.int64)
        flat = np.concatenate(out["spike_times_ms"]) if n else np.empty(0)
        return npz_response({"t_ms": out["t_ms"], "v_mV": v, "stim_pA": out["stim_pA"], "params": payload["params"],
                             "param_names": np.array(payload["param_names"]), "spike_times_ms": flat,
                             "spike_index": np.concatenate([[0], np.cumsum(counts)]), "spike_counts": counts,
                             "first_spike_latency_ms": out["first_spike_latency_ms"],
                             "dt_ms": out["record_dt_ms"]}, name)
    if fmt == "nwb":
        per_trace = [{"family": body.family, "params": dict(zip(payload["param_names"], map(float, payload["params"][k])))}
                     for k in range(n)]
        content = await asyncio.to_thread(
            nwb_bytes, v, out["stim_pA"], out["record_dt_ms"], start, min(end, body.duration_ms), out["amplitude_pA"],
            {"family": body.family, "preset": payload["preset"], "seed": body.seed, "source": "noble /v1/simulate"},
            per_trace, "Long Square" if body.stimulus.kind == "step" else f"noble {body.stimulus.kind}")
        return nwb_response(content, name)
    return json_response({
        "family": body.family, "preset": payload["preset"], "n_neurons": n, "dt_ms": out["record_dt_ms"],
        "n_time": int(v.shape[1]), "t0_ms": 0.0, "param_names": payload["param_names"],
        "param_units": payload["param_units"], "params": payload["params"], "stim_pA": out["stim_pA"], "v_mV": v,
        "spike_times_ms": [np.asarray(s, dtype=np.float64) for s in out["spike_times_ms"]],
        "spike_counts": out["spike_counts"], "first_spike_latency_ms": out["first_spike_latency_ms"],
        "features": {k: np.asarray(val, dtype=np.float64) for k, val in out["features"].items()},
        "wall_s": out["wall_s"],
    })
