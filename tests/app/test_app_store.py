"""Job store against SQLite and a real PostgreSQL server: atomic claims, cancel-wins, crash recovery."""

from __future__ import annotations

import socket
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from noble.app.store import (CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, JobRow, JobStore, owner_is_dead,
                             process_owner, utcnow)
from sqlalchemy import delete, update


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_args(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str | None, Path]:
    if request.param == "sqlite":
        return None, tmp_path
    url = request.getfixturevalue("postgres_url")
    s = JobStore(url, tmp_path)
    with s.sessions.begin() as sess:  # a clean table for every test
        sess.execute(delete(JobRow))
    s.close()
    return url, tmp_path


@pytest.fixture
def store(store_args: tuple[str | None, Path]) -> JobStore:
    s = JobStore(*store_args)
    yield s
    s.close()


def test_create_get_list_and_survive_reopen(store: JobStore, store_args: tuple[str | None, Path]) -> None:
    jobs = [store.create("datagen", {"config": {"n": i}}, total=3) for i in range(5)]
    got = store.get(jobs[2].id)
    assert got is not None and got.state == QUEUED and got.spec == {"config": {"n": 2}} and got.progress_total == 3
    assert got.created_at.tzinfo is not None
    page, total = store.list_jobs(limit=2, offset=0)
    assert total == 5 and len(page) == 2
    assert page[0].created_at >= page[1].created_at  # newest first
    page2, _ = store.list_jobs(limit=10, offset=2)
    assert {j.id for j in page} | {j.id for j in page2} == {j.id for j in jobs}
    assert store.list_jobs(kind="train")[1] == 0
    # A new store on the same database (a restarted server) sees every job.
    reopened = JobStore(*store_args)
    try:
        assert reopened.get(jobs[4].id) is not None
        assert reopened.counts() == {("datagen", QUEUED): 5}
    finally:
        reopened.close()
    assert store.get("0" * 32) is None


def test_claim_is_exclusive_under_contention(store: JobStore) -> None:
    job = store.create("datagen", {})
    wins: list[str] = []
    barrier = threading.Barrier(8)

    def worker(k: int) -> None:
        barrier.wait()
        if store.claim(job.id, f"host:{k}:boot"):
            wins.append(f"host:{k}:boot")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    got = store.get(job.id)
    assert got.state == RUNNING and got.owner == wins[0] and got.attempts == 1 and got.started_at is not None


def test_progress_finish_and_cancel_wins(store: JobStore) -> None:
    me, other = "h:1:a", "h:2:b"
    job = store.create("datagen", {}, total=4)
    assert store.claim(job.id, me)
    assert not store.progress(job.id, other, 1, 4)  # not the owner
    assert store.progress(job.id, me, 2, 4, message="2/4 shards")
    assert store.get(job.id).progress_done == 2
    assert store.cancel(job.id)
    # The runner finishing late must not overwrite the cancel.
    assert not store.finish(job.id, me, SUCCEEDED, result={"path": "dataset"})
    got = store.get(job.id)
    assert got.state == CANCELLED and got.result is None and got.finished_at is not None
    assert not store.cancel(job.id)  # already terminal
    assert store.heartbeat([job.id], me) == {job.id}  # the owner learns it lost the job

    j2 = store.create("train", {})
    assert store.claim(j2.id, me)
    assert store.finish(j2.id, me, FAILED, message="boom", errors=["boom"])
    assert store.get(j2.id).errors == ["boom"]
    with pytest.raises(ValueError):
        store.finish(j2.id, me, RUNNING)


def test_orphans_are_found_requeued_or_failed(store: JobStore) -> None:
    me = process_owner()
    host = socket.gethostname()
    dead_here = f"{host}:{2**22 + 12345}:deadbeef"  # above pid_max's default: no such process
    alive_elsewhere = "other-host:1:cafe"
    a = store.create("datagen", {})
    b = store.create("train", {})
    c = store.create("datagen", {})
    assert store.claim(a.id, dead_here) and store.claim(b.id, dead_here) and store.claim(c.id, alive_elsewhere)
    found = {j.id for j in store.orphans(me, stale_s=60)}
    assert found == {a.id, b.id}  # c's owner is on another host with a fresh heartbeat
    # c goes silent: its heartbeat is older than the stale limit.
    with store.sessions.begin() as s:
        s.execute(update(JobRow).where(JobRow.id == c.id).values(heartbeat_at=utcnow() - timedelta(seconds=120)))
    assert {j.id for j in store.orphans(me, stale_s=60)} == {a.id, b.id, c.id}
    ja = store.get(a.id)
    assert store.requeue(ja, "resumed")
    assert store.get(a.id).state == QUEUED and store.get(a.id).owner is None
    assert not store.requeue(ja, "again")  # no longer running: nothing to do
    jb = store.get(b.id)
    assert store.fail_orphan(jb, "interrupted")
    got = store.get(b.id)
    assert got.state == FAILED and "interrupted" in got.message and got.errors == ["interrupted"]
    # The requeued job is claimed again by the new process, attempts counted.
    assert store.claim(a.id, me)
    assert store.get(a.id).attempts == 2


def test_owner_is_dead_rules() -> None:
    me = process_owner()
    host, pid, _ = me.rsplit(":", 2)
    assert not owner_is_dead(me, me)
    assert owner_is_dead(f"{host}:{pid}:previousboot", me)  # our pid, earlier incarnation
    assert owner_is_dead(f"{host}:{2**22 + 7}:x", me)
    assert not owner_is_dead(f"{host}:1:x", me)  # pid 1 exists
    assert not owner_is_dead("elsewhere:123:x", me)
    assert owner_is_dead(None, me) and owner_is_dead("garbage", me)
