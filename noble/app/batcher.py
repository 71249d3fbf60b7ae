"""Micro-batching of surrogate forward passes across concurrent requests.

Requests put their (features, stimulus) rows in a queue; one asyncio task takes the first waiting request,
waits at most `max_wait_s` for more (never past `max_rows` neurons), concatenates them, runs ONE forward
pass in a worker thread and hands every request its slice. While a pass runs, new requests pile up and go
together in the next one, so under load batches grow by themselves and the wait costs nothing.
Disabled, each request runs its own forward pass (same thread, same code path).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from .metrics import Metrics

log = logging.getLogger(__name__)

PredictFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class _Item:
    features: np.ndarray
    stim: np.ndarray
    future: asyncio.Future[np.ndarray]
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def rows(self) -> int:
        return int(self.features.shape[0])


class MicroBatcher:
    """Merge concurrent predict(features (b,F), stim (b,T)) calls into bounded batches."""

    def __init__(self, predict: PredictFn, *, name: str, executor: Executor, max_rows: int = 512,
                 max_wait_s: float = 0.005, enabled: bool = True, metrics: "Metrics | None" = None) -> None:
        self.predict = predict
        self.name = name
        self.executor = executor
        self.max_rows = max(1, int(max_rows))
        self.max_wait_s = max(0.0, float(max_wait_s))
        self.enabled = enabled
        self.metrics = metrics
        self._pending: collections.deque[_Item] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0  # forward passes run (for tests and the benchmark)

    # ---- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.enabled and self._task is None:
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._task = None
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(RuntimeError("server shutting down"))

    # ---- public -----------------------------------------------------------------------------------------
    async def submit(self, features: np.ndarray, stim: np.ndarray) -> np.ndarray:
        """Voltage (b, T) for b neurons; waits for a shared forward pass when batching is on."""
        features = np.ascontiguousarray(features, dtype=np.float64)  # range checks happen on these values
        stim = np.ascontiguousarray(stim, dtype=np.float32)
        if features.shape[0] != stim.shape[0]:
            raise ValueError(f"features has {features.shape[0]} rows, stim has {stim.shape[0]}")
        if self._closed:
            raise RuntimeError("server shutting down")
        loop = asyncio.get_running_loop()
        if not self.enabled:
            return await loop.run_in_executor(self.executor, self._forward, features, stim, 1)
        self.start()
        fut: asyncio.Future[np.ndarray] = loop.create_future()
        self._pending.append(_Item(features, stim, fut))
        self._gauge()
        assert self._wakeup is not None
        self._wakeup.set()
        return await fut

    # ---- internals --------------------------------------------------------------------------------------
    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_rows.labels(self.name).set(sum(i.rows for i in self._pending))
            self.metrics.queue_requests.labels(self.name).set(len(self._pending))

    def _forward(self, features: np.ndarray, stim: np.ndarray, n_requests: int) -> np.ndarray:
        t0 = time.perf_counter()
        out = np.asarray(self.predict(features, stim), dtype=np.float32)
        self.batches += 1
        if self.metrics is not None:
            self.metrics.forward_seconds.labels(self.name).observe(time.perf_counter() - t0)
            self.metrics.batch_rows.labels(self.name).observe(features.shape[0])
            self.metrics.batch_requests.labels(self.name).observe(n_requests)
        if out.shape != stim.shape:
            raise RuntimeError(f"surrogate returned shape {out.shape} for stimulus {stim.shape}")
        return out

    def _take_batch(self) -> list[_Item]:
        """Pop waiting requests up to max_rows neurons (a single larger request goes alone)."""
        batch: list[_Item] = []
        rows = 0
        while self._pending:
            item = self._pending[0]
            if item.future.done():  # the client went away
                self._pending.popleft()
                continue
            if batch and rows + item.rows > self.max_rows:
                break
            self._pending.popleft()
            batch.append(item)
            rows += item.rows
        return batch

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            # Wait for company: until max_rows neurons are waiting or the oldest request waited max_wait_s.
            oldest = self._pending[0].enqueued if self._pending else time.perf_counter()
            while sum(i.rows for i in self._pending) < self.max_rows:
                left = self.max_wait_s - (time.perf_counter() - oldest)
                if left <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=left)
                except asyncio.TimeoutError:
                    break
            batch = self._take_batch()
            self._gauge()
            if not batch:
                continue
            try:
                feats = np.concatenate([i.features for i in batch]) if len(batch) > 1 else batch[0].features
                stims = np.concatenate([i.stim for i in batch]) if len(batch) > 1 else batch[0].stim
                out = await loop.run_in_executor(self.executor, self._forward, feats, stims, len(batch))
            except asyncio.CancelledError:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(RuntimeError("server shutting down"))
                raise
            except Exception as exc:  # noqa: BLE001 - the error goes to every request of the batch
                log.exception("forward pass failed for a batch of %d request(s)", len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            start = 0
            for item in batch:
                if not item.future.done():
                    item.future.set_result(out[start:start + item.rows])
                start += item.rows
