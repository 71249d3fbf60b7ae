"""Data-generation throughput: Brian2 (cython runtime, cpp_standalone compile-once-run-many) vs NEURON.

Throughput is simulated neuron-seconds per wall-clock second for n neurons, each with its own parameters
(drawn around a preset) and its own step current, recording v every `record_dt_ms` and all spikes, i.e. the
work a dataset shard does. Variants, each measured in its own subprocess (clean peak RSS, cold caches):

* `brian2-cython`:     `noble.datagen.simulate.simulate` (ONE group, 2-D TimedArray stimulus) with a fresh
                       cython cache; compile time = first run - median run.
* `brian2-standalone`: `set_device('cpp_standalone', build_on_run=False)`, `device.build(run=False)` once
                       (compile time), then every repeat `device.run(run_args=...)` with NEW parameters, initial
                       state and stimulus, plus reading v and spikes back, timed.
* `neuron`:            the same hh model in NEURON (`noble.datagen.neuron_ref`, IClamp steps, fixed step,
                       secondorder=0); compile time = nrnivmodl into a fresh cache.

Peak RSS is sampled (psutil, every 10 ms) over the process and its children (the standalone binary) during
the timed repeats. With `--hh-methods` the Brian2 hh variants also run with other integration methods, and
the spike-count error of every hh variant against a converged NEURON reference (dt/5, Crank-Nicolson) on the
first `--accuracy-n` neurons shows what each speed buys.

    .venv/bin/python benchmarks/datagen.py --quick
    .venv/bin/python benchmarks/datagen.py --n 1000 --duration-ms 1000 --dt-ms 0.025 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PRESETS = {"hh": "fast_spiking", "lif": "default"}
AMP_RANGE_PA = (0.0, 400.0)  # per-neuron step amplitudes, uniform (hh FS rheobase ~95 pA, lif 200 pA)


# ---------------------------------------------------------------------------------------------------------
# inputs shared by every variant
# ---------------------------------------------------------------------------------------------------------
def make_inputs(family: Any, n: int, seed: int, duration_ms: float) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Parameters (n, P) around the family's benchmark preset, step amplitudes (n,), step start and length."""
    rng = np.random.default_rng(seed)
    params = family.sample_params(n, rng, PRESETS[family.name])
    amps = rng.uniform(*AMP_RANGE_PA, size=n)
    return params, amps, 0.1 * duration_ms, 0.8 * duration_ms


def family_for(name: str, method: str | None) -> Any:
    from noble.datagen.models import get

    base = get(name)
    if method is None or method == base.method:
        return base
    return type(f"{base.__name__}_{method}", (base,), {"method": method})


def cpu_seconds() -> float:
    """User + system CPU time of this process and its waited-for children (the standalone binary)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class PeakRSS:
    """Samples the RSS of this process plus its children (e.g. the standalone binary) in a thread."""

    def __init__(self, interval_s: float = 0.02) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> int:
        import psutil

        total = self._proc.memory_info().rss
        for child in self._proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(self._interval)

    def __enter__(self) -> "PeakRSS":
        self.peak = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------------------------------------------------
# workers (one per subprocess)
# ---------------------------------------------------------------------------------------------------------
def _worker_cython(cfg: dict, fam: Any, scratch: Path) -> dict:
    import brian2 as b2

    from noble.datagen.simulate import simulate, steps_matrix

    b2.prefs.codegen.runtime.cython.cache_dir = str(scratch / "cython")  # fresh cache: cold compile
    times, cpu, counts0, totals = [], [], None, []
    first_s = None
    rss = None
    for r in range(cfg["repeats"] + 1):
        params, amps, start, dur = make_inputs(fam, cfg["n"], cfg["seed"] + max(r - 1, 0), cfg["duration_ms"])
        stim = steps_matrix(amps, start, dur, cfg["duration_ms"], cfg["stim_dt_ms"])
        if r == 0:  # compiles into the fresh cache
            t0 = time.perf_counter()
            simulate(fam, params, stim, stim_dt_ms=cfg["stim_dt_ms"], duration_ms=cfg["duration_ms"],
                     dt_ms=cfg["dt_ms"], record_dt_ms=cfg["record_dt_ms"], target="cython")
            first_s = time.perf_counter() - t0
            rss = PeakRSS().__enter__()
            continue
        t0, c0 = time.perf_counter(), cpu_seconds()
        res = simulate(fam, params, stim, stim_dt_ms=cfg["stim_dt_ms"], duration_ms=cfg["duration_ms"],
                       dt_ms=cfg["dt_ms"], record_dt_ms=cfg["record_dt_ms"], target="cython")
        times.append(time.perf_counter() - t0)
        cpu.append(cpu_seconds() - c0)
        totals.append(int(res.spike_counts.sum()))
        if r == 1:
            counts0 = res.spike_counts
        del res, stim
    rss.__exit__()
    return {"compile_s": max(first_s - statistics.median(times), 0.0), "first_run_s": first_s, "run_s": times,
            "cpu_s": cpu, "peak_rss_MB": rss.peak / 2**20, "counts": counts0, "spikes_per_repeat": totals}


def _initial_state(fam: Any, params: np.ndarray) -> dict[str, np.ndarray]:
    """State the family's build() sets at t = 0 (needed as run_args when parameters change)."""
    names = fam.param_names()
    if fam.name == "hh":  # its steady state without input (the benchmark's steps start from 0 pA)
        return fam.steady_state(params, 0.0)[0]
    if fam.name == "lif":
        return {"v": params[:, names.index("V_rest")]}
    raise ValueError(f"no initial-state rule for family {fam.name!r}")


def _worker_standalone(cfg: dict, fam: Any, scratch: Path) -> dict:
    import brian2 as b2

    from noble.datagen.models.base import UNITS
    from noble.datagen.simulate import steps_matrix

    project = str(scratch / "standalone")
    b2.set_device("cpp_standalone", build_on_run=False, directory=project)
    b2.prefs.devices.cpp_standalone.openmp_threads = cfg["threads"] if cfg["threads"] > 1 else 0
    b2.prefs.logging.file_log = False
    b2.prefs.logging.delete_log_on_exit = True
    t0 = time.perf_counter()
    b2.defaultclock.dt = cfg["dt_ms"] * b2.ms
    params, amps, start, dur = make_inputs(fam, cfg["n"], cfg["seed"], cfg["duration_ms"])
    stim = steps_matrix(amps, start, dur, cfg["duration_ms"], cfg["stim_dt_ms"])
    I_stim = b2.TimedArray(np.ascontiguousarray(stim.T) * b2.pA, dt=cfg["stim_dt_ms"] * b2.ms, name="I_stim_arr")
    built = fam.build(cfg["n"], params, {"I_stim": I_stim}, np.random.default_rng(cfg["seed"]))
    group = built.group
    state = b2.StateMonitor(group, built.v_name, record=True, dt=cfg["record_dt_ms"] * b2.ms, name="vmon")
    spikes = b2.SpikeMonitor(group, name="spikemon")
    net = b2.Network(group, state, spikes, *built.extra)
    net.run(cfg["duration_ms"] * b2.ms, namespace={})
    b2.device.build(directory=project, compile=True, run=False)
    compile_s = time.perf_counter() - t0

    times, cpu, counts0, totals = [], [], None, []
    n_rec = int(round(cfg["duration_ms"] / cfg["record_dt_ms"]))
    with PeakRSS() as rss:
        for r in range(cfg["repeats"]):
            params, amps, start, dur = make_inputs(fam, cfg["n"], cfg["seed"] + r, cfg["duration_ms"])
            t0, c0 = time.perf_counter(), cpu_seconds()
            stim = steps_matrix(amps, start, dur, cfg["duration_ms"], cfg["stim_dt_ms"])
            run_args: dict[Any, Any] = {I_stim: np.ascontiguousarray(stim.T) * b2.pA}
            for j, spec in enumerate(fam.params):
                run_args[getattr(group, spec.name)] = params[:, j] * UNITS[spec.unit]
            for var, val in _initial_state(fam, params).items():
                if var in group.variables:  # hh drops the Ca2+ gates when g_T and g_L are zero in every neuron
                    run_args[getattr(group, var)] = val * (b2.mV if var == "v" else 1)
            b2.device.run(directory=project, with_output=False, run_args=run_args)
            v = np.asarray(getattr(state, built.v_name) / b2.mV, dtype=np.float32)[:, :n_rec]
            trains = spikes.spike_trains()
            times.append(time.perf_counter() - t0)
            cpu.append(cpu_seconds() - c0)
            counts = np.array([len(trains[k]) for k in range(cfg["n"])])
            totals.append(int(counts.sum()))
            if r == 0:
                counts0 = counts
            # Drop this run's static arrays (the stimulus alone is n x T doubles).
            for f in Path(project, "static_arrays").glob("init_*"):
                f.unlink(missing_ok=True)
            del v, trains, stim, run_args
    return {"compile_s": compile_s, "run_s": times, "cpu_s": cpu, "peak_rss_MB": rss.peak / 2**20,
            "counts": counts0, "spikes_per_repeat": totals}


def _worker_neuron(cfg: dict, fam: Any, scratch: Path, reference: bool = False) -> dict:
    os.environ["NOBLE_CACHE_DIR"] = str(scratch / "nrn")  # fresh cache: cold nrnivmodl
    from noble.datagen import neuron_ref

    t0 = time.perf_counter()
    neuron_ref.load_neuron()  # nrnivmodl into the fresh cache, then load
    compile_s = time.perf_counter() - t0
    if reference:  # converged reference on the accuracy subset
        params, amps, start, dur = make_inputs(fam, cfg["n"], cfg["seed"], cfg["duration_ms"])
        k = cfg["accuracy_n"]
        res = neuron_ref.simulate_neuron(params[:k], amps[:k], start, dur, cfg["duration_ms"],
                                         dt_ms=cfg["dt_ms"] / 5, record_dt_ms=None, secondorder=2)
        return {"counts": res.spike_counts}
    times, cpu, counts0, totals = [], [], None, []
    with PeakRSS() as rss:
        for r in range(cfg["repeats"]):
            params, amps, start, dur = make_inputs(fam, cfg["n"], cfg["seed"] + r, cfg["duration_ms"])
            t0, c0 = time.perf_counter(), cpu_seconds()
            res = neuron_ref.simulate_neuron(params, amps, start, dur, cfg["duration_ms"], dt_ms=cfg["dt_ms"],
                                             record_dt_ms=cfg["record_dt_ms"], nthread=cfg["threads"])
            times.append(time.perf_counter() - t0)
            cpu.append(cpu_seconds() - c0)
            totals.append(int(res.spike_counts.sum()))
            if r == 0:
                counts0 = res.spike_counts
            del res
    return {"compile_s": compile_s, "run_s": times, "cpu_s": cpu, "peak_rss_MB": rss.peak / 2**20,
            "counts": counts0, "spikes_per_repeat": totals}


def worker(cfg: dict) -> dict:
    import psutil

    import brian2  # noqa: F401  (baseline: interpreter + numpy + Brian2 (+ NEURON) imported, nothing built)

    if cfg["variant"].startswith("neuron"):
        import neuron  # noqa: F401
    fam = family_for(cfg["family"], cfg.get("method"))
    baseline_MB = psutil.Process().memory_info().rss / 2**20
    scratch = Path(tempfile.mkdtemp(prefix="noble-bench-"))
    try:
        if cfg["variant"] == "brian2-cython":
            out = _worker_cython(cfg, fam, scratch)
        elif cfg["variant"] == "brian2-standalone":
            out = _worker_standalone(cfg, fam, scratch)
        elif cfg["variant"] == "neuron":
            out = _worker_neuron(cfg, fam, scratch)
        elif cfg["variant"] == "neuron-reference":
            out = _worker_neuron(cfg, fam, scratch, reference=True)
        else:
            raise ValueError(cfg["variant"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    out["baseline_rss_MB"] = baseline_MB
    counts = out.pop("counts")
    out["counts_subset"] = None if counts is None else [int(c) for c in counts[: cfg["accuracy_n"]]]
    out["spikes_total"] = None if counts is None else int(np.sum(counts))
    out["method"] = fam.method if cfg["variant"].startswith("brian2") else (
        "fixed step, secondorder=0" if cfg["variant"] == "neuron" else "dt/5, secondorder=2")
    return out


# ---------------------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------------------
def run_variant(cfg: dict) -> dict:
    """Run one variant in a fresh interpreter; returns its JSON record (or the error)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cfg, f)
        cfg_path = f.name
    out_path = cfg_path + ".out"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", cfg_path, "--worker-out", out_path]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    try:
        if proc.returncode != 0 or not Path(out_path).exists():
            return {**cfg, "error": (proc.stderr or proc.stdout)[-2000:], "wall_s": wall}
        rec = json.loads(Path(out_path).read_text())
        return {**cfg, **rec, "wall_s": wall}
    finally:
        Path(cfg_path).unlink(missing_ok=True)
        Path(out_path).unlink(missing_ok=True)


def summarise(records: list[dict], ref_counts: list[int] | None) -> list[dict]:
    rows = []
    nrn = next((r for r in records if r["variant"] == "neuron" and "error" not in r), None)
    for r in records:
        if "error" in r:
            rows.append({**r, "throughput": None})
            continue
        med = statistics.median(r["run_s"])
        thr = r["n"] * r["duration_ms"] / 1000.0 / med
        cpu_med = statistics.median(r["cpu_s"])
        row = {**r, "median_run_s": med, "throughput": thr, "median_cpu_s": cpu_med,
               "throughput_per_cpu_s": r["n"] * r["duration_ms"] / 1000.0 / cpu_med,
               "rss_per_1000_MB": r["peak_rss_MB"] * 1000.0 / r["n"],
               "rss_above_baseline_per_1000_MB": (r["peak_rss_MB"] - r["baseline_rss_MB"]) * 1000.0 / r["n"]}
        if nrn is not None and r["family"] == "hh":
            nrn_thr = nrn["n"] * nrn["duration_ms"] / 1000.0 / statistics.median(nrn["run_s"])
            row["ratio_vs_neuron"] = thr / nrn_thr
            nrn_cpu = nrn["n"] * nrn["duration_ms"] / 1000.0 / statistics.median(nrn["cpu_s"])
            row["cpu_ratio_vs_neuron"] = row["throughput_per_cpu_s"] / nrn_cpu
        if ref_counts is not None and r["family"] == "hh" and r.get("counts_subset"):
            a = np.asarray(r["counts_subset"][: len(ref_counts)])
            b = np.asarray(ref_counts[: len(a)])
            row["spike_count_err_pct"] = 100.0 * float(np.abs(a - b).sum()) / max(float(b.sum()), 1.0)
        rows.append(row)
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    head = ("| family | variant | method | compile (s) | run median (s) | neuron-s / wall-s | x NEURON (hh) "
            "| neuron-s / CPU-s | x NEURON (CPU) "
            "| spike-count err vs ref (%) | peak RSS (MB) | RSS per 1000 neurons (MB) | above import baseline, "
            "per 1000 (MB) |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        if r.get("throughput") is None:
            lines.append(f"| {r['family']} | {r['variant']} | {r.get('method', '')} | error: "
                         f"{r.get('error', '')[-120:]!r} |  |  |  |  |  |  |  |  |  |")
            continue

        def fmt(x: Any, spec: str) -> str:
            return "" if x is None else format(x, spec)

        lines.append(
            f"| {r['family']} | {r['variant']} | {r['method']} | {r['compile_s']:.1f} | {r['median_run_s']:.2f} "
            f"| {r['throughput']:.1f} | {fmt(r.get('ratio_vs_neuron'), '.2f')} "
            f"| {r['throughput_per_cpu_s']:.1f} | {fmt(r.get('cpu_ratio_vs_neuron'), '.2f')} "
            f"| {fmt(r.get('spike_count_err_pct'), '.1f')} | {r['peak_rss_MB']:.0f} | {r['rss_per_1000_MB']:.0f} "
            f"| {r['rss_above_baseline_per_1000_MB']:.0f} |")
    cfg = (f"n={meta['n']}, {meta['duration_ms']:g} ms simulated, dt={meta['dt_ms']} ms, v recorded every "
           f"{meta['record_dt_ms']} ms, stimulus grid {meta['stim_dt_ms']} ms, {meta['repeats']} repeats (median), "
           f"threads={meta['threads']}; {meta['cpu']} ({meta['cores']} cores), load average "
           f"{meta['load_before']} before / {meta['load_after']} after")
    return "\n".join(lines) + "\n\n" + cfg + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: n=50, 200 ms, 1 repeat")
    ap.add_argument("--n", type=int, default=1000, help="neurons per run")
    ap.add_argument("--duration-ms", type=float, default=1000.0)
    ap.add_argument("--dt-ms", type=float, default=0.025)
    ap.add_argument("--record-dt-ms", type=float, default=0.1)
    ap.add_argument("--stim-dt-ms", type=float, default=0.1, help="grid of the Brian2 stimulus TimedArray")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="OpenMP threads (standalone) / NEURON threads")
    ap.add_argument("--families", nargs="+", default=["hh", "lif"], choices=["hh", "lif", "hh_mc"],
                    help="hh_mc runs benchmarks/datagen_mc.py (NEURON vs Brian2 cython and cpp_standalone with "
                         "run_args) on min(n, 16) neurons of the same duration")
    ap.add_argument("--hh-methods", nargs="+", default=None,
                    help="Brian2 integration methods for hh (default: the family's own)")
    ap.add_argument("--no-neuron", action="store_true")
    ap.add_argument("--accuracy-n", type=int, default=100, help="neurons in the spike-count accuracy check")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write all records and the table here")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        cfg = json.loads(args.worker.read_text())
        args.worker_out.write_text(json.dumps(worker(cfg)))
        return 0

    if args.quick:
        args.n, args.duration_ms, args.repeats, args.accuracy_n = 50, 200.0, 1, 10
    args.accuracy_n = min(args.accuracy_n, args.n)
    base = {"n": args.n, "duration_ms": args.duration_ms, "dt_ms": args.dt_ms, "record_dt_ms": args.record_dt_ms,
            "stim_dt_ms": args.stim_dt_ms, "repeats": args.repeats, "threads": args.threads, "seed": args.seed,
            "accuracy_n": args.accuracy_n}
    has_neuron = not args.no_neuron
    if has_neuron:
        try:
            import importlib.util

            if importlib.util.find_spec("neuron") is None:
                raise ImportError("neuron")
        except ImportError:
            print("NEURON not installed: skipping the NEURON variants (pip install 'noble[neuron]')")
            has_neuron = False

    mc_rc = 0
    if "hh_mc" in args.families:
        import datagen_mc  # noqa: PLC0415 - sibling benchmark script

        mc_argv = ["--neurons", str(min(args.n, 16)), "--duration-ms", str(args.duration_ms),
                   "--repeats", str(args.repeats), "--dt-ms", str(args.dt_ms), "--seed", str(args.seed)]
        if args.quick:
            mc_argv = ["--quick"]
        if not has_neuron:
            mc_argv.append("--no-neuron")
        if args.json:
            mc_argv += ["--json", str(args.json.with_name(args.json.stem + "_hh_mc.json"))]
        mc_rc = datagen_mc.main(mc_argv)
        args.families = [f for f in args.families if f != "hh_mc"]
        if not args.families:
            return mc_rc

    plan: list[dict] = []
    for fam in args.families:
        methods = (args.hh_methods or [None]) if fam == "hh" else [None]
        for method in methods:
            for variant in ("brian2-cython", "brian2-standalone"):
                plan.append({**base, "family": fam, "variant": variant, "method": method})
        if fam == "hh" and has_neuron:
            plan.append({**base, "family": "hh", "variant": "neuron", "method": None})

    meta = {**base, "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "load_before": " ".join(f"{x:.1f}" for x in os.getloadavg()), "python": platform.python_version()}
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
        meta["cpu"] = cpu
    except (OSError, StopIteration):
        pass
    records = []
    for cfg in plan:
        label = f"{cfg['family']} {cfg['variant']} {cfg['method'] or ''}".strip()
        print(f"running {label} ...", flush=True)
        rec = run_variant(cfg)
        if "error" in rec:
            print(f"  FAILED: {rec['error'][-500:]}", flush=True)
        else:
            print(f"  compile {rec['compile_s']:.1f} s, runs {[round(t, 2) for t in rec['run_s']]} s "
                  f"(CPU {[round(t, 2) for t in rec['cpu_s']]} s), "
                  f"peak RSS {rec['peak_rss_MB']:.0f} MB, spikes per repeat {rec['spikes_per_repeat']}", flush=True)
        records.append(rec)
    ref_counts = None
    if has_neuron and "hh" in args.families and args.accuracy_n > 0:
        print(f"running the converged NEURON reference on {args.accuracy_n} hh neurons ...", flush=True)
        ref = run_variant({**base, "family": "hh", "variant": "neuron-reference", "method": None})
        ref_counts = ref.get("counts_subset")
    meta["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    rows = summarise(records, ref_counts)
    table = markdown(rows, meta)
    print()
    print(table)
    hh_rows = [r for r in rows if r["family"] == "hh" and r.get("ratio_vs_neuron") is not None
               and r["variant"].startswith("brian2")]
    for r in hh_rows:
        verdict = ">= 1 (target met)" if r["ratio_vs_neuron"] >= 1 else "< 1"
        print(f"hh {r['variant']} ({r['method']}): {r['ratio_vs_neuron']:.2f} x NEURON throughput (wall), "
              f"{r['cpu_ratio_vs_neuron']:.2f} x per CPU-second: {verdict}")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows, "table": table,
                                         "reference_counts": ref_counts}, indent=2, default=float))
        print(f"wrote {args.json}")
    return mc_rc if all("error" not in r for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
