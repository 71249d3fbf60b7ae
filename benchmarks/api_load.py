"""API load benchmark: /v1/sample (n=16 neurons per request) at 1 and 32 concurrent clients, against the
same traces computed in-process without HTTP, and micro-batching on vs off at 32 clients.

    python benchmarks/api_load.py                      # shipped default surrogate
    python benchmarks/api_load.py --surrogate CKPT_DIR --requests 24 --out bench_api.json

Each configuration runs a real `noble serve` (uvicorn, one worker) in a subprocess; the load generator is
asyncio + httpx in this process. Printed: p50/p99 latency, throughput in traces/s, the serving-overhead ratio
(HTTP p50 over in-process p50 of the same sample() call) and the batching speed-up at 32 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

N_PER_REQUEST = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`noble serve` in its own process group, on a free port."""

    def __init__(self, surrogate: Path, batching: bool, workdir: Path, torch_threads: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"server-batch-{'on' if batching else 'off'}.log"
        self.env = {**os.environ, "NOBLE_DATA_DIR": str(workdir / f"store-{batching}"),
                    "NOBLE_DEFAULT_SURROGATE": str(surrogate), "NOBLE_BATCH_ENABLED": str(batching).lower(),
                    "NOBLE_SAMPLE_MAX_N": "1024", "NOBLE_DASK_WORKERS": "1", "NOBLE_LOG_LEVEL": "warning",
                    "NOBLE_TORCH_THREADS": str(torch_threads)}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "Server":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "noble.cli", "serve", "--port", str(self.port)],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/ready", timeout=5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("server not ready in 300 s")

    def __exit__(self, *exc: Any) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def metric(self, name: str) -> float:
        text = httpx.get(self.url + "/metrics").text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total


def summary(latencies_s: list[float], wall_s: float, n_requests: int) -> dict[str, float]:
    lat = np.asarray(latencies_s) * 1e3
    return {"requests": n_requests, "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "mean_ms": float(lat.mean()), "throughput_traces_per_s": n_requests * N_PER_REQUEST / wall_s,
            "wall_s": wall_s}


async def http_load(url: str, clients: int, per_client: int, amplitude_pA: float) -> dict[str, float]:
    """`clients` concurrent loops, each sending `per_client` sample requests back to back."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        # Warm-up: first forward pass, KDE, eFEL, JSON paths.
        for _ in range(2):
            r = await client.post("/v1/sample", json={"n_samples": N_PER_REQUEST, "seed": 0,
                                                      "stimulus": {"kind": "step", "amplitude_pA": amplitude_pA}})
            r.raise_for_status()

        async def one_client(k: int) -> None:
            for j in range(per_client):
                body = {"n_samples": N_PER_REQUEST, "seed": 1000 * k + j,
                        "stimulus": {"kind": "step", "amplitude_pA": amplitude_pA}}
                t0 = time.perf_counter()
                r = await client.post("/v1/sample", json=body)
                r.raise_for_status()
                _ = r.content  # the traces arrived
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(one_client(k) for k in range(clients)))
        wall = time.perf_counter() - t0
    return summary(latencies, wall, clients * per_client)


def in_process(surrogate_path: Path, clients: int, per_client: int, amplitude_pA: float,
               torch_threads: int) -> dict[str, Any]:
    """The same sample() calls without HTTP: sequential, `clients` threads, and one merged forward pass."""
    import torch

    from noble.app.surrogates import serialize_efel
    from noble.operator import load_surrogate, sample

    torch.set_num_threads(torch_threads)  # the same as the server's (NOBLE_TORCH_THREADS)
    serialize_efel()  # eFEL is not thread-safe: the server takes the same lock
    sur = load_surrogate(surrogate_path)
    for _ in range(3):
        sample(sur, amplitude_pA, N_PER_REQUEST, 0)
    seq: list[float] = []
    n_seq = max(per_client, 8)
    t0 = time.perf_counter()
    for j in range(n_seq):
        t = time.perf_counter()
        sample(sur, amplitude_pA, N_PER_REQUEST, j)
        seq.append(time.perf_counter() - t)
    out: dict[str, Any] = {"sequential": summary(seq, time.perf_counter() - t0, n_seq)}

    lat: list[float] = []

    def call(seed: int) -> None:
        t = time.perf_counter()
        sample(sur, amplitude_pA, N_PER_REQUEST, seed)
        lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as ex:
        list(ex.map(call, range(clients * max(1, per_client // 4))))
    out["threads"] = summary(lat, time.perf_counter() - t0, len(lat))
    # Forward pass alone for all 32 x 16 neurons at once (what perfect batching could reach).
    feats = sample(sur, amplitude_pA, clients * N_PER_REQUEST, 1).features
    stim = np.repeat(sur.step_stimulus(amplitude_pA)[None, :], len(feats), axis=0)
    t = time.perf_counter()
    sur.predict(feats, stim)
    fwd = time.perf_counter() - t
    out["one_forward_pass"] = {"neurons": int(len(feats)), "wall_s": fwd, "throughput_traces_per_s": len(feats) / fwd}
    out["trace"] = {"n_time": sur.config.n_time, "dt_ms": sur.config.dt_ms,
                    "duration_ms": sur.config.n_time * sur.config.dt_ms}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--surrogate", type=Path, default=None, help="checkpoint dir (default: the shipped default)")
    ap.add_argument("--requests", type=int, default=24, help="requests per client at 32 clients (x4 at 1 client)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--amplitude-pA", type=float, default=200.0)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the server logs and stores")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch intra-op threads, in-process and in the server (1: no oversubscription)")
    args = ap.parse_args()

    from noble.operator import default_surrogate_path

    ckpt = (args.surrogate or default_surrogate_path()).resolve()
    if not (ckpt / "config.json").is_file():
        sys.exit(f"no surrogate checkpoint at {ckpt}")
    work = Path(tempfile.mkdtemp(prefix="noble-bench-api-"))
    per1 = args.requests * 4
    res: dict[str, Any] = {"surrogate": str(ckpt), "n_per_request": N_PER_REQUEST, "clients": args.clients,
                           "torch_threads": args.torch_threads,
                           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                       "load_avg_1m": os.getloadavg()[0]}}
    try:
        res["in_process"] = in_process(ckpt, args.clients, args.requests, args.amplitude_pA, args.torch_threads)
        with Server(ckpt, batching=True, workdir=work, torch_threads=args.torch_threads) as srv:
            res["http_batching_on_1_client"] = asyncio.run(http_load(srv.url, 1, per1, args.amplitude_pA))
            b0, r0 = srv.metric("noble_batch_size_requests_count"), srv.metric("noble_batch_size_requests_sum")
            res["http_batching_on_32_clients"] = asyncio.run(http_load(srv.url, args.clients, args.requests,
                                                                       args.amplitude_pA))
            b1, r1 = srv.metric("noble_batch_size_requests_count"), srv.metric("noble_batch_size_requests_sum")
            res["http_batching_on_32_clients"]["requests_per_forward_pass"] = (r1 - r0) / max(b1 - b0, 1)
        with Server(ckpt, batching=False, workdir=work, torch_threads=args.torch_threads) as srv:
            res["http_batching_off_32_clients"] = asyncio.run(http_load(srv.url, args.clients, args.requests,
                                                                        args.amplitude_pA))
    finally:
        if args.keep:
            print(f"logs and stores kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    ip = res["in_process"]
    one, on32, off32 = (res["http_batching_on_1_client"], res["http_batching_on_32_clients"],
                        res["http_batching_off_32_clients"])
    res["ratios"] = {
        "serving_overhead_p50_1_client": one["p50_ms"] / ip["sequential"]["p50_ms"],
        "http_vs_in_process_threads_throughput_32": on32["throughput_traces_per_s"] / ip["threads"]["throughput_traces_per_s"],
        "batching_speedup_throughput_32": on32["throughput_traces_per_s"] / off32["throughput_traces_per_s"],
        "batching_p50_ratio_32": off32["p50_ms"] / on32["p50_ms"],
    }
    tr = ip["trace"]
    print(f"\n/v1/sample, {N_PER_REQUEST} neurons/request, traces of {tr['duration_ms']:.0f} ms "
          f"({tr['n_time']} samples at {tr['dt_ms']} ms); surrogate {ckpt.name}; {os.cpu_count()} CPUs, "
          f"load avg {res['machine']['load_avg_1m']:.1f}")
    print(f"{'configuration':42s} {'p50 ms':>9s} {'p99 ms':>9s} {'traces/s':>10s}")
    rows = [("in-process sample(), sequential", ip["sequential"]),
            (f"in-process sample(), {args.clients} threads", ip["threads"]),
            ("HTTP, 1 client (batching on)", one),
            (f"HTTP, {args.clients} clients, batching ON", on32),
            (f"HTTP, {args.clients} clients, batching OFF", off32)]
    for label, r in rows:
        print(f"{label:42s} {r['p50_ms']:9.1f} {r['p99_ms']:9.1f} {r['throughput_traces_per_s']:10.1f}")
    print(f"{'one forward pass of ' + str(ip['one_forward_pass']['neurons']) + ' neurons (in-process)':42s} "
          f"{ip['one_forward_pass']['wall_s'] * 1e3:9.1f} {'':>9s} {ip['one_forward_pass']['throughput_traces_per_s']:10.1f}")
    r = res["ratios"]
    print(f"serving overhead (HTTP p50 / in-process p50, 1 client): {r['serving_overhead_p50_1_client']:.2f}x")
    print(f"batching at {args.clients} clients: throughput x{r['batching_speedup_throughput_32']:.2f}, "
          f"p50 x{r['batching_p50_ratio_32']:.2f} lower; {on32['requests_per_forward_pass']:.1f} requests per pass")
    if args.out:
        args.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
