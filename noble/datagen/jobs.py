"""Fan shards out on Dask distributed: LocalCluster by default, an existing scheduler when given.

Resumable by construction: a shard is written atomically and skipped when complete, the manifest is
rewritten (atomically) after every finished shard, and failures are retried then summarised.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from .config import DatasetConfig
from .dataset import build_shard, read_manifest, shard_is_complete, shard_name, shard_record, write_manifest

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)


@dataclass
class JobSummary:
    """What a datagen run did: shards done before, computed now, and failed (with reasons)."""

    directory: Path
    n_shards: int
    skipped: list[int] = field(default_factory=list)
    computed: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and len(self.skipped) + len(self.computed) == self.n_shards


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int = 2, threads_per_worker: int = 1) -> Iterator["Client"]:
    """A distributed Client: to `scheduler` if given, else to an in-process LocalCluster of worker processes
    (one thread each: Brian2 runs are CPU-bound and not thread-safe within a process)."""
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                           dashboard_address=None, silence_logs=logging.WARNING)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@contextlib.contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """One job per dataset directory at a time (an flock held by the driving process)."""
    import fcntl

    fh = open(directory / ".lock", "w")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another datagen job is writing {directory}") from None
        yield
    finally:
        fh.close()


def remove_stale_temporaries(directory: Path) -> list[str]:
    """Partial shards left by a killed run (never renamed into place) are garbage; delete them."""
    removed = []
    for tmp in directory.glob(".shard-*.h5.tmp-*"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp.name)
    return removed


def pending_shards(cfg: DatasetConfig, directory: Path) -> tuple[list[int], dict[int, dict]]:
    """Shards still to compute, and records of those already complete (from disk, not trusted blindly)."""
    done: dict[int, dict] = {}
    todo: list[int] = []
    digest = cfg.digest()
    for i in range(cfg.n_shards):
        if shard_is_complete(directory / shard_name(i), digest):
            done[i] = shard_record(directory, i)
        else:
            todo.append(i)
    return todo, done


def run_datagen(
    cfg: DatasetConfig,
    directory: str | Path,
    *,
    scheduler: str | None = None,
    workers: int = 2,
    retries: int = 2,
    progress: bool = True,
    client=None,
    on_progress: Callable[[int, int], None] | None = None,
) -> JobSummary:
    """Generate every missing shard of `cfg` into `directory` on Dask and keep the manifest current."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    existing = read_manifest(directory)
    if existing is not None and existing.get("config_digest") != cfg.digest():
        raise ValueError(
            f"{directory} holds a dataset of another config (digest {existing.get('config_digest')}); "
            "use a new directory rather than overwrite it")
    with directory_lock(directory):
        return _run_locked(cfg, directory, scheduler, workers, retries, progress, client, on_progress)


def shard_task_key(digest: str, directory: Path, index: int) -> str:
    """The Dask key of shard `index` of the dataset in `directory` (what a canceller must name). Two directories
    of the same config are different work: the directory's hash keeps their keys apart on a shared scheduler."""
    dir_tag = hashlib.sha256(str(Path(directory).resolve()).encode()).hexdigest()[:8]
    return f"noble-shard-{digest}-{dir_tag}-{index}"


def _run_locked(cfg: DatasetConfig, directory: Path, scheduler: str | None, workers: int, retries: int,
                progress: bool, client, on_progress: Callable[[int, int], None] | None) -> JobSummary:
    from distributed import as_completed
    from tqdm.auto import tqdm

    removed = remove_stale_temporaries(directory)
    if removed:
        log.info("removed %d partial shard(s) of an interrupted run", len(removed))
    todo, done = pending_shards(cfg, directory)
    summary = JobSummary(directory=directory, n_shards=cfg.n_shards, skipped=sorted(done))
    write_manifest(directory, cfg, done)
    if on_progress:
        on_progress(len(done), cfg.n_shards)
    if not todo:
        return summary
    cfg_json = cfg.model_dump_json()
    ctx = contextlib.nullcontext(client) if client is not None else dask_client(scheduler, workers)
    with ctx as cl:
        futures = {
            cl.submit(build_shard, cfg_json, i, str(directory.resolve()), retries=retries, pure=False,
                      key=shard_task_key(cfg.digest(), directory, i)): i
            for i in todo
        }
        bar = tqdm(total=cfg.n_shards, initial=len(done), desc=f"datagen {cfg.name}", unit="shard",
                   disable=not progress)
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                record = fut.result()
            except Exception as exc:  # noqa: BLE001 - a failed shard is reported, never fatal to the others
                summary.failed[i] = f"{type(exc).__name__}: {exc}"
                log.error("shard %d failed after %d retries: %s", i, retries, exc)
            else:
                done[i] = record
                summary.computed.append(i)
            write_manifest(directory, cfg, done, summary.failed)
            bar.update(1)
            if on_progress:
                on_progress(len(done), cfg.n_shards)
        bar.close()
    # A worker killed mid-write leaves its temporary behind while its task re-runs elsewhere; so does a first
    # attempt of a task Dask took for lost (a worker slow to answer under load) that never finishes. Every shard
    # is settled now (and a local cluster is shut), so what is left is garbage (seen once, under load: a
    # `.shard-00000.h5.tmp-<pid>` beside a complete shard 0).
    late = remove_stale_temporaries(directory)
    if late:
        log.info("removed %d temporary shard file(s) of superseded task attempts", len(late))
    summary.computed.sort()
    return summary
