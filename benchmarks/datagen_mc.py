"""Multi-compartment data generation: Brian2 (cython runtime, cpp_standalone) vs NEURON, side by side.

The same hh_mc neurons (a sampled population around a preset, ~120 compartments each) with the same
somatic current steps are simulated by
  * NEURON (fixed step, implicit Euler, one thread)                      -- noble.datagen.neuron_mc
  * Brian2 cython runtime: n neurons packed in ONE SpatialNeuron         -- noble.datagen.simulate_mc.simulate_multi
  * Brian2 cpp_standalone: compiled once, re-run with new channel parameters through run_args
                                                                         -- noble.datagen.simulate_mc.StandaloneMC
Throughput is neuron-seconds simulated per wall-second (and per CPU-second, which is steadier on a shared
machine); ratios are against NEURON. Every engine runs `--repeats` times on different channel parameters
and the best time is kept (timeit's convention); one-off costs (cython / C++ compilation) are reported
apart. The spike counts of the three engines are compared on the last parameter set (for the standalone
binary these parameters differ from the compiled ones, so this also checks that run_args took effect).

    .venv/bin/python benchmarks/datagen_mc.py --quick
    .venv/bin/python benchmarks/datagen_mc.py --neurons 16 --duration-ms 1000 --repeats 3 --json bench_mc.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from noble.datagen.models.hh_mc import HHMC  # noqa: E402
from noble.datagen.simulate import steps_matrix  # noqa: E402
from noble.datagen.simulate_mc import StandaloneMC, simulate_multi  # noqa: E402


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _population(n: int, preset: str, cv: float, repeats: int, seed: int) -> list[np.ndarray]:
    """`repeats` parameter sets for the same n morphologies: channel densities and potentials vary
    between sets, geometry / Ri / cm stay (a compiled standalone project fixes them)."""
    rng = np.random.default_rng(seed)
    names = HHMC.param_names()
    fixed = [i for i, nm in enumerate(names) if nm.endswith("_um") or nm in ("Ri", "cm")]
    base = HHMC.sample_params(n, rng, preset, cv=cv, sd_potential=1.0)
    sets = []
    for _ in range(repeats):
        p = HHMC.sample_params(n, rng, preset, cv=cv, sd_potential=1.0)
        p[:, fixed] = base[:, fixed]
        sets.append(p)
    return sets


def run(n: int, duration_ms: float, repeats: int, dt_ms: float, preset: str, cv: float, seed: int,
        skip_neuron: bool = False) -> dict[str, Any]:
    stim_dt = 0.1
    start, dur = 0.1 * duration_ms, 0.8 * duration_ms
    amps = np.linspace(0.0, 500.0, n)
    stim = steps_matrix(amps, start, dur, duration_ms, stim_dt)
    sets = _population(n, preset, cv, repeats, seed)
    neuron_s = n * duration_ms / 1000.0
    out: dict[str, Any] = {
        "neurons": n, "compartments_per_neuron": HHMC.n_compartments(), "duration_ms": duration_ms, "dt_ms": dt_ms,
        "repeats": repeats, "preset": preset, "python": platform.python_version(), "machine": platform.machine(),
        "cores": os.cpu_count(), "load_before": " ".join(f"{x:.1f}" for x in os.getloadavg()), "engines": {},
    }
    counts: dict[str, np.ndarray] = {}

    # NEURON.
    if not skip_neuron:
        from noble.datagen.neuron_mc import load, simulate_neuron_mc

        load()  # compile / load the mechanisms outside the timing
        walls, cpus = [], []
        for k, p in enumerate(sets):
            t0, c0 = time.perf_counter(), time.process_time()
            res = simulate_neuron_mc(HHMC, p, amps, start, dur, duration_ms, dt_ms=dt_ms, record_dt_ms=0.1)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            if k == len(sets) - 1:
                counts["neuron"] = res.spike_counts
        out["engines"]["neuron"] = {"wall_s": min(walls), "cpu_s": min(cpus), "setup_s": 0.0}

    # Brian2 cython runtime (first call may compile; cached in ~/.cython afterwards).
    t0 = time.perf_counter()
    res = simulate_multi(HHMC, sets[0], stim, stim_dt_ms=stim_dt, duration_ms=duration_ms, dt_ms=dt_ms, target="cython")
    first = time.perf_counter() - t0
    walls, cpus = [], []
    for p in sets:
        t0, c0 = time.perf_counter(), time.process_time()
        res = simulate_multi(HHMC, p, stim, stim_dt_ms=stim_dt, duration_ms=duration_ms, dt_ms=dt_ms,
                             target="cython")
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    counts["brian2_cython"] = res.spike_counts
    out["engines"]["brian2_cython"] = {"wall_s": min(walls), "cpu_s": min(cpus), "setup_s": max(first - min(walls), 0.0)}

    # Brian2 cpp_standalone: compile once, run many (run_args).
    t0 = time.perf_counter()
    sa = StandaloneMC(HHMC, sets[0], duration_ms=duration_ms, stim_dt_ms=stim_dt, dt_ms=dt_ms, record_dt_ms=0.1)
    build = time.perf_counter() - t0
    try:
        walls, cpus = [], []
        for k, p in enumerate(sets):
            t0, c0, cc0 = time.perf_counter(), time.process_time(), _children_cpu()
            res = sa.run(p, stim)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0 + _children_cpu() - cc0)
            if k == len(sets) - 1:
                counts["brian2_cpp_standalone"] = res.spike_counts
        out["engines"]["brian2_cpp_standalone"] = {"wall_s": min(walls), "cpu_s": min(cpus), "setup_s": build}
    finally:
        sa.close()
        shutil.rmtree(sa.directory, ignore_errors=True)

    ref = out["engines"].get("neuron")
    for name, e in out["engines"].items():
        e["neuron_s_per_wall_s"] = neuron_s / e["wall_s"]
        e["neuron_s_per_cpu_s"] = neuron_s / e["cpu_s"]
        if ref is not None:
            e["speed_vs_neuron_wall"] = ref["wall_s"] / e["wall_s"]
            e["speed_vs_neuron_cpu"] = ref["cpu_s"] / e["cpu_s"]
    names = list(counts)
    out["spike_counts"] = {k: v.tolist() for k, v in counts.items()}
    out["spike_counts_agree"] = bool(all(np.array_equal(counts[names[0]], counts[k]) for k in names))
    brian = {k: v for k, v in out["engines"].items() if k.startswith("brian2")}
    if ref is not None:
        winners = [k for k, v in brian.items() if v["speed_vs_neuron_cpu"] > 1.0]
        out["brian2_targets_faster_than_neuron"] = winners
    return out


def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"hh_mc ({res['preset']}): {res['neurons']} neurons x {res['compartments_per_neuron']} compartments, "
        f"{res['duration_ms']:.0f} ms, dt {res['dt_ms']} ms; best of {res['repeats']} runs",
        "",
        "| engine | wall s | CPU s | one-off setup s | neuron-s / wall-s | neuron-s / CPU-s | x NEURON (wall) | x NEURON (CPU) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, e in res["engines"].items():
        lines.append(
            f"| {name} | {e['wall_s']:.2f} | {e['cpu_s']:.2f} | {e['setup_s']:.1f} | {e['neuron_s_per_wall_s']:.3f} | "
            f"{e['neuron_s_per_cpu_s']:.3f} | {e.get('speed_vs_neuron_wall', float('nan')):.2f} | "
            f"{e.get('speed_vs_neuron_cpu', float('nan')):.2f} |")
    lines.append("")
    lines.append(f"load average before: {res['load_before']} on {res['cores']} cores")
    lines.append(f"spike counts agree across engines: {res['spike_counts_agree']}")
    if "brian2_targets_faster_than_neuron" in res:
        w = res["brian2_targets_faster_than_neuron"]
        lines.append(f"Brian2 targets faster than NEURON (CPU time): {', '.join(w) if w else 'none'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--neurons", type=int, default=16)
    ap.add_argument("--duration-ms", type=float, default=1000.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dt-ms", type=float, default=0.025)
    ap.add_argument("--preset", default="fast_spiking")
    ap.add_argument("--cv", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-neuron", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smoke run: 4 neurons, 200 ms, 1 repeat")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    if args.quick:
        args.neurons, args.duration_ms, args.repeats = 4, 200.0, 1
    res = run(args.neurons, args.duration_ms, args.repeats, args.dt_ms, args.preset, args.cv, args.seed,
              skip_neuron=args.no_neuron)
    table = markdown(res)
    res["table"] = table
    print(table)
    if args.json is not None:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
