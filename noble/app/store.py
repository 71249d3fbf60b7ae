"""Job store (SQLAlchemy 2): SQLite file under NOBLE_DATA_DIR by default, PostgreSQL via NOBLE_DATABASE_URL.

Every state change is ONE conditional UPDATE (`... WHERE state IN (...)`), so two server processes sharing a
database never both claim a job, and a cancelled job is never overwritten by a runner finishing late.
Ownership (`owner` = host:pid:boot-id) plus a heartbeat lets a restarted server find the jobs a dead process
was running: they are resumed (datagen) or failed with a reason.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Text, create_engine, event, func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
ACTIVE = (QUEUED, RUNNING)
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(dt: datetime | None) -> datetime | None:
    """SQLite drops tzinfo on the way back; every stored time is UTC."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    """One job: what was asked (spec), where it stands, who runs it, what it produced (internal paths)."""

    __tablename__ = "noble_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    errors: Mapped[list[str]] = mapped_column(JSON, default=list)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class Job:
    """A detached snapshot of a job row (safe to pass between threads)."""

    id: str
    kind: str
    state: str
    spec: dict[str, Any]
    progress_done: int
    progress_total: int
    message: str | None
    errors: list[str]
    result: dict[str, Any] | None
    owner: str | None
    attempts: int
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None

    @classmethod
    def of(cls, row: JobRow) -> "Job":
        return cls(id=row.id, kind=row.kind, state=row.state, spec=dict(row.spec or {}),
                   progress_done=row.progress_done or 0, progress_total=row.progress_total or 0,
                   message=row.message, errors=list(row.errors or []), result=dict(row.result) if row.result else None,
                   owner=row.owner, attempts=row.attempts or 0, cancel_requested=bool(row.cancel_requested),
                   created_at=_aware(row.created_at), updated_at=_aware(row.updated_at),  # type: ignore[arg-type]
                   started_at=_aware(row.started_at), finished_at=_aware(row.finished_at),
                   heartbeat_at=_aware(row.heartbeat_at))


def normalise_url(url: str) -> str:
    """postgres:// and postgresql:// mean psycopg 3 (the driver we ship), not psycopg2."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(database_url: str | None, data_dir: Path) -> Engine:
    """SQLite file `data_dir/jobs.sqlite3` (WAL, busy timeout) unless a URL is given."""
    if not database_url:
        data_dir.mkdir(parents=True, exist_ok=True)
        database_url = f"sqlite:///{(data_dir / 'jobs.sqlite3').resolve()}"
    url = normalise_url(database_url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def process_owner() -> str:
    """Identity of this server process: host, pid and a boot id (pids are reused, e.g. pid 1 in containers)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def owner_is_dead(owner: str | None, me: str) -> bool:
    """True when `owner` is certainly gone: an earlier process on this host whose pid is free or is ours."""
    if not owner:
        return True
    try:
        host, pid_s, boot = owner.rsplit(":", 2)
        pid = int(pid_s)
    except ValueError:
        return True
    my_host, my_pid, _ = me.rsplit(":", 2)
    if host != my_host:
        return False  # another machine: only the heartbeat can tell
    if owner == me:
        return False
    if pid == int(my_pid):
        return True  # our pid, another boot id: a previous incarnation
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class JobStore:
    """Create, list, claim, update and finish jobs; all transitions are atomic conditional updates."""

    def __init__(self, database_url: str | None, data_dir: Path) -> None:
        self.engine = make_engine(database_url, data_dir)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        Base.metadata.create_all(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT 1")).scalar() == 1

    # ---- create / read -------------------------------------------------------------------------------------
    def create(self, kind: str, spec: dict[str, Any], total: int = 0, job_id: str | None = None) -> Job:
        now = utcnow()
        row = JobRow(id=job_id or uuid.uuid4().hex, kind=kind, state=QUEUED, spec=spec, progress_done=0, progress_total=total,
                     errors=[], attempts=0, cancel_requested=False, created_at=now, updated_at=now)
        with self.sessions.begin() as s:
            s.add(row)
        return Job.of(row)

    def get(self, job_id: str) -> Job | None:
        with self.sessions() as s:
            row = s.get(JobRow, job_id)
            return Job.of(row) if row is not None else None

    def list_jobs(self, *, limit: int = 50, offset: int = 0, state: str | None = None,
             kind: str | None = None) -> tuple[list[Job], int]:
        """Newest first, with the total count matching the filters."""
        q = select(JobRow)
        c = select(func.count()).select_from(JobRow)
        if state:
            q, c = q.where(JobRow.state == state), c.where(JobRow.state == state)
        if kind:
            q, c = q.where(JobRow.kind == kind), c.where(JobRow.kind == kind)
        q = q.order_by(JobRow.created_at.desc(), JobRow.id).limit(limit).offset(offset)
        with self.sessions() as s:
            rows = s.scalars(q).all()
            total = int(s.execute(c).scalar() or 0)
            return [Job.of(r) for r in rows], total

    def counts(self) -> dict[tuple[str, str], int]:
        """(kind, state) -> number of jobs (for /metrics)."""
        with self.sessions() as s:
            rows = s.execute(select(JobRow.kind, JobRow.state, func.count()).group_by(JobRow.kind, JobRow.state))
            return {(k, st): int(n) for k, st, n in rows}

    def oldest_queued(self, limit: int = 10) -> list[str]:
        with self.sessions() as s:
            return list(s.scalars(select(JobRow.id).where(JobRow.state == QUEUED)
                                  .order_by(JobRow.created_at, JobRow.id).limit(limit)))

    # ---- transitions ---------------------------------------------------------------------------------------
    def _update(self, job_id: str, where: Iterable[Any], **values: Any) -> bool:
        values.setdefault("updated_at", utcnow())
        with self.sessions.begin() as s:
            res = s.execute(update(JobRow).where(JobRow.id == job_id, *where).values(**values))
            return (res.rowcount or 0) == 1

    def claim(self, job_id: str, owner: str) -> bool:
        """queued -> running for `owner`; False when someone else got it (or it was cancelled)."""
        now = utcnow()
        return self._update(job_id, [JobRow.state == QUEUED], state=RUNNING, owner=owner, started_at=now,
                            heartbeat_at=now, attempts=JobRow.attempts + 1)

    def progress(self, job_id: str, owner: str, done: int, total: int, message: str | None = None) -> bool:
        values: dict[str, Any] = {"progress_done": done, "progress_total": total, "heartbeat_at": utcnow()}
        if message is not None:
            values["message"] = message
        return self._update(job_id, [JobRow.state == RUNNING, JobRow.owner == owner], **values)

    def heartbeat(self, job_ids: Iterable[str], owner: str) -> set[str]:
        """Refresh our running jobs; returns the ids that are no longer ours and running (cancelled elsewhere)."""
        lost = set()
        for jid in job_ids:
            if not self._update(jid, [JobRow.state == RUNNING, JobRow.owner == owner], heartbeat_at=utcnow()):
                lost.add(jid)
        return lost

    def finish(self, job_id: str, owner: str, state: str, *, message: str | None = None,
               errors: list[str] | None = None, result: dict[str, Any] | None = None) -> bool:
        """running -> a terminal state, only if still ours and running (a cancel wins over a late finish)."""
        if state not in TERMINAL:
            raise ValueError(f"not a terminal state: {state}")
        values: dict[str, Any] = {"state": state, "finished_at": utcnow(), "message": message}
        if errors is not None:
            values["errors"] = errors
        if result is not None:
            values["result"] = result
        return self._update(job_id, [JobRow.state == RUNNING, JobRow.owner == owner], **values)

    def cancel(self, job_id: str) -> bool:
        """queued/running -> cancelled (the runner notices and stops its tasks)."""
        return self._update(job_id, [JobRow.state.in_(ACTIVE)], state=CANCELLED, cancel_requested=True,
                            finished_at=utcnow(), message="cancelled by request")

    def set_result(self, job_id: str, result: dict[str, Any]) -> bool:
        return self._update(job_id, [], result=result)

    # ---- crash recovery --------------------------------------------------------------------------------------
    def orphans(self, me: str, stale_s: float, is_dead: Callable[[str | None, str], bool] = owner_is_dead) -> list[Job]:
        """Running jobs whose owner is certainly dead or silent for `stale_s` seconds."""
        cutoff = utcnow() - timedelta(seconds=stale_s)
        with self.sessions() as s:
            rows = s.scalars(select(JobRow).where(JobRow.state == RUNNING, JobRow.owner != me)).all()
            out = []
            for r in rows:
                hb = _aware(r.heartbeat_at)
                if is_dead(r.owner, me) or hb is None or hb < cutoff:
                    out.append(Job.of(r))
            return out

    def requeue(self, job: Job, reason: str) -> bool:
        """An orphaned running job back to queued (only if its owner did not change meanwhile)."""
        return self._update(job.id, [JobRow.state == RUNNING, JobRow.owner == job.owner], state=QUEUED,
                            owner=None, message=reason)

    def fail_orphan(self, job: Job, reason: str) -> bool:
        return self._update(job.id, [JobRow.state == RUNNING, JobRow.owner == job.owner], state=FAILED,
                            finished_at=utcnow(), message=reason, errors=[*job.errors, reason])
