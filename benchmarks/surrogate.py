"""Surrogate vs Brian2: traces per second for the SAME traces, side by side in one run.

Both produce n voltage traces of the surrogate's protocol (long-square step, trace length and sampling of
the checkpoint: 1.2 s at 0.2 ms by default) for n neurons of the trained population:

* `surrogate`: `Surrogate.predict` under torch.inference_mode on CPU (or `--device cuda`), batch 1 (one
  trace per call) and batch `--n` (default 256 traces in one call, run internally in chunks of
  `Surrogate.batch_size`, default 32, set with `--batch-size`), after a warm-up call; feature vectors drawn
  from the population density. On cuda each timed call is bracketed by torch.cuda.synchronize() (predict
  returns numpy, so it syncs anyway) and the GPU name and torch version go into the JSON.
* `brian2`:    `noble.datagen.simulate.simulate` with the dataset's integrator (dt 0.025 ms), ONE vectorised
  group of n neurons recorded at the surrogate's dt, cython runtime, after a warm-up run (compile cached);
  parameters of fresh models sampled around the preset (the surrogate's features are not invertible to
  parameters, and the work per trace does not depend on which model it is).

It prints traces/s of each, the ratios, and where the time goes (a torch profiler summary of one
batch-256 surrogate call; for Brian2 the number of integration steps x state variables).

    .venv/bin/python benchmarks/surrogate.py                    # shipped default, batches 1 and 256
    .venv/bin/python benchmarks/surrogate.py --quick            # fewer repeats / smaller Brian2 group
    .venv/bin/python benchmarks/surrogate.py --ckpt runs/x --threads 2 --json out.json
    .venv/bin/python benchmarks/surrogate.py --device cuda --n 4096 --batch-size 512 --json gpu.json
    .venv/bin/python benchmarks/surrogate.py --ckpt noble/assets/hh_mc_fs --brian-n 16 --standalone   # + cpp_standalone
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _timed(fn, repeats: int, sync=None) -> list[float]:
    out = []
    for _ in range(repeats):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        out.append(time.perf_counter() - t0)
    return out


def bench_surrogate(sur, n_big: int, repeats: int, seed: int) -> dict[str, Any]:
    import torch

    from noble.operator.sample import draw_features

    rng = np.random.default_rng(seed)
    feats = draw_features(sur, n_big, rng)
    amps = rng.uniform(sur.config.stimulus.amplitudes_pA[1] if len(sur.config.stimulus.amplitudes_pA) > 1 else 100.0,
                       max(sur.config.stimulus.amplitudes_pA or [300.0]), size=n_big)
    stim = np.stack([sur.step_stimulus(a) for a in amps])
    cuda = str(sur.device).startswith("cuda")
    sync = torch.cuda.synchronize if cuda else None
    sur.predict(feats[:1], stim[:1])  # warm-up
    t1 = _timed(lambda: sur.predict(feats[:1], stim[:1]), max(10, repeats * 5), sync)
    sur.predict(feats, stim)
    tb = _timed(lambda: sur.predict(feats, stim), repeats, sync)
    # where the time goes: one profiled batch call, top operators by self CPU (CUDA: device) time
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    try:
        with profile(activities=acts) as prof:
            sur.predict(feats, stim)
            if sync:
                sync()
    except Exception as e:  # noqa: BLE001 - CUPTI may be unavailable on a sandboxed GPU; the timings stand
        print(f"profiler failed ({type(e).__name__}: {e}); profiling CPU activity only", file=sys.stderr)
        cuda_prof = False
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            sur.predict(feats, stim)
    else:
        cuda_prof = cuda

    def self_t(e: Any) -> float:
        if not cuda_prof:
            return e.self_cpu_time_total
        return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0.0)

    ops = sorted(prof.key_averages(), key=self_t, reverse=True)
    total = sum(self_t(e) for e in ops) or 1.0
    top = [{"op": e.key, "share": self_t(e) / total} for e in ops[:6]]
    return {
        "device": str(sur.device), "chunk_batch_size": sur.batch_size,
        "profile_time": "self device (CUDA) time" if cuda_prof else "self CPU time",
        "threads": torch.get_num_threads(),
        "batch1_s_per_trace": float(np.median(t1)),
        "batch1_traces_per_s": 1.0 / float(np.median(t1)),
        f"batch{n_big}_s_per_call": float(np.median(tb)),
        f"batch{n_big}_traces_per_s": n_big / float(np.median(tb)),
        "profile_top_ops": top,
        "feats": feats, "amps": amps,
    }


def bench_brian2(sur, amps: np.ndarray, n_big: int, seed: int, dt_ms: float, target: str,
                 repeats: int = 1) -> dict[str, Any]:
    from noble.datagen.models import get
    from noble.datagen.simulate import simulate, steps_matrix

    fam = get(sur.config.family)
    rng = np.random.default_rng(seed)
    p = sur.config.stimulus
    total = sur.config.duration_ms
    rec = sur.config.dt_ms

    def run(n: int) -> Any:
        params = fam.sample_params(n, rng, sur.config.preset)
        stim = steps_matrix(amps[:n], p.start_ms, p.duration_ms, total, rec)
        return simulate(fam, params, stim, stim_dt_ms=rec, duration_ms=total, dt_ms=dt_ms, record_dt_ms=rec,
                        target=target)

    t0 = time.perf_counter()
    run(1)  # warm-up: code generation / compilation (cached afterwards)
    warm = time.perf_counter() - t0
    t1 = _timed(lambda: run(1), 3)
    # the median of `repeats` group runs: one run of 16 hh_mc neurons took 22 s, three runs minutes later 11.4-11.7 s
    tb = _timed(lambda: run(n_big), repeats)
    res = run(1)
    return {
        "target": target, "dt_ms": dt_ms, "method": fam.method, "first_run_s (incl. compile)": warm,
        "batch1_s_per_trace": float(np.median(t1)), "batch1_traces_per_s": 1.0 / float(np.median(t1)),
        f"batch{n_big}_s_per_call": float(np.median(tb)), f"batch{n_big}_traces_per_s": n_big / float(np.median(tb)),
        f"batch{n_big}_s_per_call_runs": [float(t) for t in tb],
        "steps_per_trace": int(round(total / dt_ms)), "trace_samples": int(res.v_mV.shape[1]),
    }


def bench_brian2_standalone(sur, amps: np.ndarray, n_big: int, seed: int, dt_ms: float) -> dict[str, Any]:
    """Brian2 cpp_standalone for a multi-compartment family: ONE project of n_big neurons compiled once
    (`StandaloneMC`), then re-run with new channel parameters and stimuli through `run_args` (what a batch job
    re-running a population does); the compile is reported apart, the run time is the figure."""
    from noble.datagen.models import get
    from noble.datagen.simulate import steps_matrix
    from noble.datagen.simulate_mc import StandaloneMC

    fam = get(sur.config.family)
    rng = np.random.default_rng(seed)
    p = sur.config.stimulus
    total, rec = sur.config.duration_ms, sur.config.dt_ms
    names = fam.param_names()
    fixed = [i for i, nm in enumerate(names) if nm.endswith("_um") or nm in ("Ri", "cm")]
    base = fam.sample_params(n_big, rng, sur.config.preset)

    def params() -> np.ndarray:
        q = fam.sample_params(n_big, rng, sur.config.preset)
        q[:, fixed] = base[:, fixed]  # the compiled morphologies
        return q

    stim = steps_matrix(amps[:n_big], p.start_ms, p.duration_ms, total, rec)
    t0 = time.perf_counter()
    sa = StandaloneMC(fam, base, duration_ms=total, stim_dt_ms=rec, dt_ms=dt_ms, record_dt_ms=rec)
    build = time.perf_counter() - t0
    try:
        sa.run(params(), stim)  # first run: loads the binary's pages
        tb = _timed(lambda: sa.run(params(), stim), 2)
    finally:
        sa.close()
        shutil.rmtree(sa.directory, ignore_errors=True)
    return {"target": "cpp_standalone (run_args)", "dt_ms": dt_ms, "compile_s": build,
            f"batch{n_big}_s_per_call": float(np.median(tb)),
            f"batch{n_big}_traces_per_s": n_big / float(np.median(tb))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, default=None, help="checkpoint (default: the shipped hh_fs)")
    ap.add_argument("--n", type=int, default=256, help="large batch size (traces in one predict call)")
    ap.add_argument("--device", default="cpu", help="torch device of the surrogate: cpu (default) or cuda[:i]")
    ap.add_argument("--batch-size", type=int, default=32, help="the surrogate's chunk size inside predict "
                    "(Surrogate.batch_size, default 32)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls of each large batch, surrogate and Brian2 "
                    "(the median is the figure)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the surrogate (2 threads on a "
                    "shared 2-core box spin-wait in OpenMP and run >10x slower)")
    ap.add_argument("--brian-dt-ms", type=float, default=0.025)
    ap.add_argument("--brian-target", default="cython", choices=["cython", "numpy"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="1 repeat, Brian2 large batch 64")
    ap.add_argument("--brian-n", type=int, default=None, help="Brian2 group size for the large batch (default "
                    "--n; a multi-compartment group of 256 takes minutes, and throughput per trace is flat in n)")
    ap.add_argument("--standalone", action="store_true", help="multi-compartment families: also Brian2 "
                    "cpp_standalone, compiled once for a group of --brian-n and re-run through run_args")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from noble.operator import default_surrogate_path, load_surrogate

    if not (args.device == "cpu" or args.device.startswith("cuda")):
        ap.error(f"--device must be cpu or cuda[:i], got {args.device!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    sur = load_surrogate(args.ckpt or default_surrogate_path(), device=args.device, batch_size=args.batch_size)
    repeats = 1 if args.quick else args.repeats
    s = bench_surrogate(sur, args.n, repeats, args.seed)
    n_brian = args.brian_n or (min(args.n, 64) if args.quick else args.n)
    b = bench_brian2(sur, s["amps"], n_brian, args.seed, args.brian_dt_ms, args.brian_target, repeats)
    sa = (bench_brian2_standalone(sur, s["amps"], n_brian, args.seed, args.brian_dt_ms)
          if args.standalone else None)
    s.pop("feats")
    s.pop("amps")
    out = {
        "checkpoint": str(args.ckpt or default_surrogate_path()), "trace": {
            "duration_ms": sur.config.duration_ms, "dt_ms": sur.config.dt_ms, "samples": sur.config.n_time},
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name(torch.device(args.device))
                    if args.device.startswith("cuda") else None},
        "surrogate": s, "brian2": b,
        "speedup_batch1": s["batch1_traces_per_s"] / b["batch1_traces_per_s"],
        "speedup_large_batch": s[f"batch{args.n}_traces_per_s"] / b[f"batch{n_brian}_traces_per_s"],
    }
    if sa is not None:
        out["brian2_standalone"] = sa
        out["speedup_large_batch_vs_standalone"] = s[f"batch{args.n}_traces_per_s"] / sa[f"batch{n_brian}_traces_per_s"]
    where = (f"{out['machine']['gpu']} ({args.device}), torch {torch.__version__}" if out["machine"]["gpu"]
             else f"{s['threads']} CPU thread(s)")
    print(f"trace: {sur.config.duration_ms:g} ms at {sur.config.dt_ms} ms ({sur.config.n_time} samples); "
          f"surrogate on {where}, chunks of {sur.batch_size}; "
          f"Brian2 {b['target']} {b['method']} dt {b['dt_ms']} ms")
    print(f"{'':>12} {'batch 1 traces/s':>18} {'large batch traces/s':>22}")
    big_s, big_b = s[f"batch{args.n}_traces_per_s"], b[f"batch{n_brian}_traces_per_s"]
    print(f"{'surrogate':>12} {s['batch1_traces_per_s']:>18.2f} {big_s:>22.2f}  (batch {args.n})")
    print(f"{'brian2':>12} {b['batch1_traces_per_s']:>18.2f} {big_b:>22.2f}  (group of {n_brian})")
    print(f"{'ratio':>12} {out['speedup_batch1']:>17.1f}x {out['speedup_large_batch']:>21.1f}x")
    if sa is not None:
        big_sa = sa[f"batch{n_brian}_traces_per_s"]
        print(f"{'standalone':>12} {'':>18} {big_sa:>22.2f}  (group of {n_brian}, run_args; compile "
              f"{sa['compile_s']:.0f} s apart)")
        print(f"{'ratio':>12} {'':>18} {out['speedup_large_batch_vs_standalone']:>21.1f}x")
    print(f"surrogate time by operator (batch call, {s['profile_time']}): "
          + ", ".join(f"{t['op']} {100 * t['share']:.0f}%" for t in s["profile_top_ops"]))
    print(f"brian2: {b['steps_per_trace']} integration steps per trace; first run incl. compile "
          f"{b['first_run_s (incl. compile)']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=float) + "\n")
    return out


if __name__ == "__main__":
    main()
