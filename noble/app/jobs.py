"""Job runner: datagen and train jobs on Dask, tracked in the job store, resumed after a crash.

* Dask: an in-process LocalCluster (NOBLE_DASK_WORKERS worker processes, NOBLE_DASK_THREADS threads each)
  started in the background at startup, or the scheduler at NOBLE_DASK_ADDRESS.
* Dispatch: queued jobs are claimed from the store with an atomic update (several server processes can
  share one database) and run in a thread pool of NOBLE_JOBS_MAX_CONCURRENT threads that drive Dask.
* Crash recovery: every running job carries its owner (host:pid:boot id) and a heartbeat. A job whose
  owner is dead (same host, pid gone) or silent for NOBLE_JOB_STALE_S is orphaned: datagen goes back to
  the queue (complete shards are skipped, so nothing finished is recomputed), train fails with a reason.
* Cancel: the store marks the job cancelled at once; the runner cancels its Dask futures (datagen) or
  sets a Dask Event that makes the training task kill its process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .store import FAILED, RUNNING, SUCCEEDED, Job, JobStore, process_owner

if TYPE_CHECKING:
    from ..config import Settings
    from .metrics import Metrics

log = logging.getLogger(__name__)

FIT_PROGRESS_TOTAL = 1000  # a fit job's progress in per mille of the whole fit (stages weighted by their time)
RESUMABLE_KINDS = {"datagen", "train"}  # datagen skips complete shards; training resumes from its last epoch


class JobCancelled(Exception):
    pass


class JobInterrupted(Exception):
    """The server is stopping: the job goes back to the queue."""


class JobFailed(Exception):
    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or [message]


def job_dir(data_dir: Path, job_id: str) -> Path:
    """Where a job's files live; `job_id` comes from the store (32 hex chars), never from a client path."""
    if len(job_id) != 32 or any(c not in "0123456789abcdef" for c in job_id):
        raise ValueError("invalid job id")
    return data_dir / "jobs" / job_id


# ---- result archives ---------------------------------------------------------------------------------
ARCHIVE_MEDIA = {"zip": "application/zip", "tar": "application/x-tar"}


def build_archive(src: Path, dest: Path, fmt: str, arcroot: str) -> Path:
    """Pack `src` (a dataset or checkpoint directory) into dest atomically; hidden temp files left out."""
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    if fmt == "zip":
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
            for p in files:
                # HDF5 shards and safetensors are already compressed or incompressible: store them.
                method = zipfile.ZIP_STORED if p.suffix in {".h5", ".safetensors", ".pt"} else zipfile.ZIP_DEFLATED
                zf.write(p, f"{arcroot}/{p.relative_to(src).as_posix()}", compress_type=method)
    elif fmt == "tar":
        with tarfile.open(tmp, "w") as tf:
            for p in files:
                tf.add(p, arcname=f"{arcroot}/{p.relative_to(src).as_posix()}", recursive=False)
    else:
        raise ValueError(f"unknown archive format {fmt!r}")
    os.replace(tmp, dest)
    return dest


# ---- Dask tasks (run on workers) ----------------------------------------------------------------------------
def run_cli_task(argv: list[str], cancel_event: str, log_path: str) -> dict[str, Any]:
    """Run `python -m noble.cli ARGV` on a Dask worker; kill it when the Dask Event `cancel_event` is set.

    The output goes to `log_path` (the job's directory); returns the exit code and the log's tail.
    """
    from distributed import Event

    ev = Event(cancel_event)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "noble.cli", *argv], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        cancelled = False
        while proc.poll() is None:
            try:
                if ev.is_set():
                    cancelled = True
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                    break
            except Exception:  # noqa: BLE001 - scheduler hiccup: keep running, check again
                pass
            time.sleep(0.5)
        rc = proc.wait()
    with open(log_path, "rb") as fh:
        fh.seek(max(0, os.path.getsize(log_path) - 4000))
        tail = fh.read().decode(errors="replace")
    return {"returncode": rc, "cancelled": cancelled, "log_tail": tail}


# ---- the runner -------------------------------------------------------------------------------------------
class JobRunner:
    """Connects to Dask, dispatches queued jobs, keeps heartbeats, recovers orphans, cancels on request."""

    def __init__(self, settings: "Settings", store: JobStore, metrics: "Metrics | None" = None) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.owner = process_owner()
        self.data_dir = Path(settings.data_dir)
        self.client: Any = None
        self.cluster: Any = None
        self.dask_error: str | None = None
        self._dask_ready = threading.Event()
        self._executor = ThreadPoolExecutor(settings.jobs_max_concurrent, thread_name_prefix="noble-job")
        self._running: dict[str, threading.Event] = {}  # job id -> cancel flag
        self._digests: dict[str, str] = {}  # job id -> datagen digest (for cancelling its Dask keys)
        self._digest_locks: dict[str, threading.Lock] = {}
        self._archive_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- lifecycle --------------------------------------------------------------------------------------
    @property
    def dask_ready(self) -> bool:
        return self._dask_ready.is_set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._tasks = [self._loop.create_task(self._connect_dask(), name="noble-dask-connect"),
                       self._loop.create_task(self._dispatch_loop(), name="noble-dispatch"),
                       self._loop.create_task(self._maintenance_loop(), name="noble-maintenance")]

    async def stop(self) -> None:
        """Stop dispatching, hand running jobs back to the queue, close Dask."""
        self._stopping.set()
        with self._lock:
            running = list(self._running)
        for jid in running:
            self._cancel_dask_work(jid)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)
        await asyncio.to_thread(self._close_dask)

    def _close_dask(self) -> None:
        with contextlib.suppress(Exception):
            if self.client is not None:
                self.client.close(timeout=10)
        with contextlib.suppress(Exception):
            if self.cluster is not None:
                self.cluster.close(timeout=10)

    async def _connect_dask(self, retry_s: float = 10.0) -> None:
        """Start/reach Dask; on failure say so in /ready, keep jobs queued and try again every retry_s."""
        while not self._stopping.is_set():
            try:
                await asyncio.to_thread(self._connect_dask_sync)
            except Exception as exc:  # noqa: BLE001
                self.dask_error = f"{type(exc).__name__}: {exc}"
                log.error("could not start or reach Dask (retrying in %.0f s): %s", retry_s, self.dask_error)
                await asyncio.sleep(retry_s)
                continue
            self.dask_error = None
            self.wake()
            return

    def _connect_dask_sync(self) -> None:
        from distributed import Client, LocalCluster

        s = self.settings
        if s.dask_address:
            self.client = Client(s.dask_address, timeout=30)
            log.info("connected to Dask scheduler %s", s.dask_address)
        else:
            self.cluster = LocalCluster(n_workers=s.dask_workers, threads_per_worker=s.dask_threads, processes=True,
                                        dashboard_address=None, silence_logs=logging.WARNING)
            self.client = Client(self.cluster)
            log.info("started LocalCluster with %d worker(s) x %d thread(s)", s.dask_workers, s.dask_threads)
        if self._stopping.is_set():
            self._close_dask()
            return
        self._dask_ready.set()

    def wake(self) -> None:
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    # ---- dispatch ---------------------------------------------------------------------------------------
    async def _dispatch_loop(self) -> None:
        assert self._wake is not None
        while not self._stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            self._wake.clear()
            if not self.dask_ready:
                continue
            try:
                await asyncio.to_thread(self._dispatch_once)
            except Exception:  # noqa: BLE001 - a DB hiccup must not kill the loop
                log.exception("dispatch failed")

    def _dispatch_once(self) -> None:
        free = self.settings.jobs_max_concurrent - len(self._running)
        if free <= 0 or self._stopping.is_set():
            return
        for jid in self.store.oldest_queued(limit=free * 2):
            if free <= 0:
                break
            if not self.store.claim(jid, self.owner):
                continue
            job = self.store.get(jid)
            if job is None or job.state != RUNNING:
                continue
            with self._lock:
                self._running[jid] = threading.Event()
            free -= 1
            log.info("job %s (%s) started, attempt %d", jid, job.kind, job.attempts, extra={"job_id": jid})
            self._executor.submit(self._execute, job)

    # ---- heartbeat and orphans --------------------------------------------------------------------------
    async def _maintenance_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.to_thread(self.maintain)
            except Exception:  # noqa: BLE001
                log.exception("job maintenance failed")
            await asyncio.sleep(self.settings.job_heartbeat_s)

    def maintain(self) -> None:
        """Heartbeat our jobs (and notice ones cancelled elsewhere); recover orphaned ones."""
        with self._lock:
            mine = list(self._running)
        for jid in self.store.heartbeat(mine, self.owner):
            self.cancel_local(jid)
        for job in self.store.orphans(self.owner, self.settings.job_stale_s):
            if job.kind in RESUMABLE_KINDS and job.attempts < self.settings.job_max_attempts:
                if self.store.requeue(job, f"resumed: the server process running it ({job.owner}) stopped; "
                                           "finished shards are kept"):
                    log.warning("job %s requeued after its owner %s died", job.id, job.owner,
                                extra={"job_id": job.id})
            else:
                why = (f"interrupted: the server process running it stopped and {job.kind} jobs are not resumable"
                       if job.kind not in RESUMABLE_KINDS else
                       f"interrupted {job.attempts} times (NOBLE_JOB_MAX_ATTEMPTS={self.settings.job_max_attempts})")
                if self.store.fail_orphan(job, why):
                    log.warning("job %s failed: %s", job.id, why, extra={"job_id": job.id})
        self.wake()

    # ---- cancel -----------------------------------------------------------------------------------------
    def cancel(self, job_id: str) -> bool:
        """Mark cancelled in the store and stop the work if it runs here."""
        ok = self.store.cancel(job_id)
        if ok:
            self.cancel_local(job_id)
        return ok

    def cancel_local(self, job_id: str) -> None:
        with self._lock:
            flag = self._running.get(job_id)
        if flag is not None:
            flag.set()
            self._cancel_dask_work(job_id)

    def _cancel_dask_work(self, job_id: str) -> None:
        client = self.client
        if client is None:
            return
        try:
            from distributed import Event, Future

            digest = self._digests.get(job_id)
            if digest is not None:
                job = self.store.get(job_id)
                n = int((job.progress_total if job else 0) or 0)
                from ..datagen.jobs import shard_task_key

                dataset = job_dir(self.data_dir, job_id) / "dataset"  # as _run_datagen passes it
                futs = [Future(shard_task_key(digest, dataset, i), client) for i in range(n)]
                if futs:
                    client.cancel(futs)
            Event(f"noble-cancel-{job_id}", client=client).set()
        except Exception:  # noqa: BLE001
            log.exception("cancelling Dask work of job %s failed", job_id)

    # ---- execution --------------------------------------------------------------------------------------
    def _execute(self, job: Job) -> None:
        flag = self._running[job.id]
        try:
            handler: Callable[[Job, threading.Event], dict[str, Any]] = {
                "datagen": self._run_datagen, "train": self._run_train, "fit": self._run_fit}[job.kind]
            result = handler(job, flag)
            if flag.is_set():
                raise JobCancelled
            if self._stopping.is_set():
                raise JobInterrupted
            self.store.finish(job.id, self.owner, SUCCEEDED, message="done", result=result)
            log.info("job %s succeeded", job.id, extra={"job_id": job.id})
        except JobCancelled:
            log.info("job %s cancelled", job.id, extra={"job_id": job.id})
        except JobInterrupted:
            current = self.store.get(job.id)
            if current is not None and current.state == RUNNING:
                if job.kind in RESUMABLE_KINDS:
                    self.store.requeue(current, "server stopped while it ran; it resumes at the next start")
                else:
                    self.store.finish(job.id, self.owner, FAILED,
                                      message=f"interrupted: the server stopped and {job.kind} jobs are not resumable")
        except JobFailed as exc:
            if flag.is_set():
                log.info("job %s cancelled", job.id, extra={"job_id": job.id})
            elif self._stopping.is_set():
                current = self.store.get(job.id)
                if current is not None and current.state == RUNNING and job.kind in RESUMABLE_KINDS:
                    self.store.requeue(current, "server stopped while it ran; it resumes at the next start")
            else:
                self.store.finish(job.id, self.owner, FAILED, message=str(exc), errors=exc.errors)
                log.warning("job %s failed: %s", job.id, exc, extra={"job_id": job.id})
        except Exception as exc:  # noqa: BLE001 - any error ends up on the job, never in the void
            log.exception("job %s crashed", job.id, extra={"job_id": job.id})
            self.store.finish(job.id, self.owner, FAILED, message=f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._running.pop(job.id, None)
                self._digests.pop(job.id, None)
            self.wake()

    def _digest_lock(self, digest: str) -> threading.Lock:
        # Dask task keys are per config digest: two jobs of one config must not run at the same time.
        with self._lock:
            return self._digest_locks.setdefault(digest, threading.Lock())

    def _run_datagen(self, job: Job, flag: threading.Event) -> dict[str, Any]:
        from ..datagen.config import parse_config
        from ..datagen.jobs import run_datagen

        cfg = parse_config(job.spec["config"])
        out = job_dir(self.data_dir, job.id) / "dataset"
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".shard-*.tmp-*"):  # a shard half-written when a previous run died
            stale.unlink(missing_ok=True)
        digest = cfg.digest()
        lock = self._digest_lock(digest)
        while not lock.acquire(timeout=1.0):
            if flag.is_set():
                raise JobCancelled
            if self._stopping.is_set():
                raise JobInterrupted
        try:
            with self._lock:
                self._digests[job.id] = digest

            def on_progress(done: int, total: int) -> None:
                if not self.store.progress(job.id, self.owner, done, total, message=f"{done}/{total} shards"):
                    flag.set()  # cancelled (possibly by another server process)
                    self._cancel_dask_work(job.id)

            self.store.progress(job.id, self.owner, 0, cfg.n_shards, message="starting")
            if flag.is_set():
                raise JobCancelled
            summary = run_datagen(cfg, out, client=self.client, retries=2, progress=False, on_progress=on_progress)
        finally:
            lock.release()
        if flag.is_set():
            raise JobCancelled
        if self._stopping.is_set() and not summary.ok:
            raise JobInterrupted
        if not summary.ok:
            errs = [f"shard {i}: {why}" for i, why in sorted(summary.failed.items())]
            raise JobFailed(f"{len(summary.failed)} of {summary.n_shards} shards failed "
                            f"({len(summary.skipped) + len(summary.computed)} complete and kept)", errs)
        from ..datagen.dataset import read_manifest

        manifest = read_manifest(out) or {}
        return {"type": "dataset", "path": "dataset", "name": cfg.name, "config_digest": digest,
                "n_shards": summary.n_shards, "rows": int(sum(s.get("rows", 0) for s in manifest.get("shards", []))),
                "computed_shards": summary.computed, "skipped_shards": summary.skipped}

    def _run_train(self, job: Job, flag: threading.Event) -> dict[str, Any]:
        src = self.store.get(job.spec["dataset_job_id"])
        if src is None or src.kind != "datagen" or src.state != SUCCEEDED:
            raise JobFailed(f"dataset job {job.spec['dataset_job_id']} is not a finished datagen job")
        dataset = job_dir(self.data_dir, src.id) / "dataset"
        jdir = job_dir(self.data_dir, job.id)
        ckpt = jdir / "checkpoint"  # kept across attempts: `noble train` resumes from its last epoch
        jdir.mkdir(parents=True, exist_ok=True)
        argv = ["train", str(dataset.resolve()), "--out", str(ckpt.resolve()), "--quiet"]
        options = job.spec.get("options") or {}
        if options:
            cfg_path = jdir / "train.json"
            cfg_path.write_text(json.dumps(options))
            argv += ["--config", str(cfg_path.resolve())]
        self.store.progress(job.id, self.owner, 0, 1, message="training")
        res = self._run_cli(job, flag, argv, "train")
        if not (ckpt / "config.json").is_file():
            raise JobFailed("training finished without writing a checkpoint", [res["log_tail"][-2000:]])
        self.store.progress(job.id, self.owner, 1, 1, message="trained")
        out: dict[str, Any] = {"type": "checkpoint", "path": "checkpoint", "dataset_job_id": src.id,
                               "surrogate": f"job-{job.id}"}
        try:
            cfg = json.loads((ckpt / "config.json").read_text())
            card = json.loads((ckpt / "card.json").read_text()) if (ckpt / "card.json").is_file() else {}
            out.update(name=cfg.get("name"), n_time=cfg.get("n_time"), dt_ms=cfg.get("dt_ms"),
                       feature_names=cfg.get("feature_names"), metrics_heldout=card.get("metrics_heldout"))
        except (OSError, ValueError):
            pass
        return out

    def _run_cli(self, job: Job, flag: threading.Event, argv: list[str], what: str,
                 on_poll: Callable[[], None] | None = None) -> dict[str, Any]:
        """Run `noble ARGV` as a Dask task (cancellable through a Dask Event); raise on failure. `on_poll` is
        called about twice a second while it runs (e.g. to relay the task's progress file to the store)."""
        from distributed import Event

        jdir = job_dir(self.data_dir, job.id)
        Event(f"noble-cancel-{job.id}", client=self.client).clear()
        fut = self.client.submit(run_cli_task, argv, f"noble-cancel-{job.id}", str((jdir / f"{what}.log").resolve()),
                                 pure=False, key=f"noble-{what}-{job.id}-{job.attempts}")
        if on_poll is not None:
            while not fut.done():
                try:
                    on_poll()
                except Exception:  # noqa: BLE001 - progress is informative; never fail a job for it
                    log.debug("progress poll of job %s failed", job.id, exc_info=True)
                time.sleep(0.5)
        res = fut.result()
        if self._stopping.is_set() and not flag.is_set():
            raise JobInterrupted
        if flag.is_set() or res.get("cancelled"):
            raise JobCancelled
        if res["returncode"] != 0:
            raise JobFailed(f"{what} exited with code {res['returncode']}", [res["log_tail"][-2000:]])
        return res

    def _run_fit(self, job: Job, flag: threading.Event) -> dict[str, Any]:
        jdir = job_dir(self.data_dir, job.id)
        rec = jdir / job.spec["recording"]
        if not rec.is_file() or rec.parent != jdir / "input":
            raise JobFailed("the uploaded recording is missing from the store")
        out = jdir / "fit"
        cfg_path = jdir / "fit_config.json"
        cfg_path.write_text(json.dumps(job.spec.get("config") or {}))
        from noble.fit.progress import read_progress

        progress_path = jdir / "fit_progress.json"
        progress_path.unlink(missing_ok=True)
        self.store.progress(job.id, self.owner, 0, FIT_PROGRESS_TOTAL, message="fitting")
        last: list[Any] = [None]

        def relay() -> None:  # the fit's progress file -> the job's progress, per generation
            doc = read_progress(progress_path)
            if doc is None or doc == last[0]:
                return
            last[0] = doc
            done = int(round(FIT_PROGRESS_TOTAL * min(0.999, float(doc.get("overall", 0.0)))))
            self.store.progress(job.id, self.owner, done, FIT_PROGRESS_TOTAL, message=str(doc.get("message", "")))

        # on an external Dask cluster the fit's restarts and polish runs spread over its workers too
        spread = ["--scheduler", self.settings.dask_address] if self.settings.dask_address else []
        self._run_cli(job, flag, ["fit", str(rec.resolve()), "--out", str(out.resolve()), "--config",
                                  str(cfg_path.resolve()), "--progress-file", str(progress_path.resolve()),
                                  "--quiet", *spread], "fit", on_poll=relay)
        self.store.progress(job.id, self.owner, FIT_PROGRESS_TOTAL, FIT_PROGRESS_TOTAL, message="fitted")
        result: dict[str, Any] = {"type": "fit", "path": "fit", "name": f"fit-{job.id[:8]}"}
        from noble.fit.api import FitSummary

        try:
            summary = FitSummary.read(out)
        except (OSError, ValueError) as exc:  # the files are the result; the summary is a convenience
            log.warning("fit job %s: fit.json not summarised (%s)", job.id, exc)
        else:
            result.update(summary.model_dump(include={"objective", "checks_all_ok", "physiology_all_ok",
                                                      "physiology_failed", "parameters", "free"}))
        return result

    # ---- results ----------------------------------------------------------------------------------------
    def result_dir(self, job: Job) -> Path:
        """The folder holding a succeeded job's result (dataset, checkpoint or fit); FileNotFoundError if none."""
        if job.result is None or job.state != SUCCEEDED:
            raise FileNotFoundError("job has no result")
        src = job_dir(self.data_dir, job.id) / job.result["path"]
        if job.result["path"] not in {"dataset", "checkpoint", "fit"} or not src.is_dir():
            raise FileNotFoundError("the job's result is missing from the store")
        return src

    def result_files(self, job: Job) -> list[Path]:
        """The plain files directly in the result folder (no temporaries, no subfolders), sorted by name."""
        return sorted(p for p in self.result_dir(job).iterdir()
                      if p.is_file() and not p.name.startswith(".") and not p.is_symlink())

    def result_archive(self, job: Job, fmt: str) -> Path:
        """The job's result packed as zip/tar (built once, then served from disk). Blocking."""
        src = self.result_dir(job)
        dest = job_dir(self.data_dir, job.id) / f"result.{fmt}"
        with self._lock:
            lock = self._archive_locks.setdefault(f"{job.id}.{fmt}", threading.Lock())
        with lock:
            if not dest.is_file():
                root = job.result.get("name") or f"{job.kind}-{job.id[:8]}"
                build_archive(src, dest, fmt, str(root))
        return dest
