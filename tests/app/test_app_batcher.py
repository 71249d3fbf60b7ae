"""Micro-batcher mechanics with a deterministic row-wise predict function (v = a * stim + b per row):
every request gets exactly its own rows back, concurrent requests share forward passes, bounds hold."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from noble.app.batcher import MicroBatcher
from noble.app.metrics import Metrics


class RowwiseAffine:
    """v[i, t] = features[i, 0] * stim[i, t] + features[i, 1]; records the rows of every call."""

    def __init__(self, delay_s: float = 0.0, fail_on: float | None = None) -> None:
        self.calls: list[int] = []
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, f: np.ndarray, s: np.ndarray) -> np.ndarray:
        with self.lock:
            self.calls.append(f.shape[0])
        if self.delay_s:
            import time

            time.sleep(self.delay_s)
        if self.fail_on is not None and np.any(f[:, 0] == self.fail_on):
            raise ValueError("feature outside the trained range")
        return f[:, :1] * s + f[:, 1:2]


def _request(k: int, rows: int, T: int = 50) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(k)
    f = np.column_stack([np.full(rows, k + 1.0), rng.normal(size=rows)]).astype(np.float32)
    s = rng.normal(size=(rows, T)).astype(np.float32)
    return f, s


async def _run(batcher: MicroBatcher, reqs: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray | BaseException]:
    return await asyncio.gather(*(batcher.submit(f, s) for f, s in reqs), return_exceptions=True)


@pytest.fixture
def executor() -> ThreadPoolExecutor:
    ex = ThreadPoolExecutor(1)
    yield ex
    ex.shutdown()


def test_concurrent_requests_share_forward_passes(executor: ThreadPoolExecutor) -> None:
    fn = RowwiseAffine(delay_s=0.01)
    metrics = Metrics()

    async def main() -> list:
        b = MicroBatcher(fn, name="t", executor=executor, max_rows=512, max_wait_s=0.05, metrics=metrics)
        reqs = [_request(k, rows=2) for k in range(32)]
        out = await _run(b, reqs)
        await b.close()
        return list(zip(reqs, out))

    results = asyncio.run(main())
    for (f, s), v in results:
        np.testing.assert_allclose(v, f[:, :1] * s + f[:, 1:2], rtol=1e-5, atol=1e-5)
    assert sum(fn.calls) == 64
    assert len(fn.calls) <= 3, fn.calls  # 32 requests, a handful of passes
    hist = metrics.registry.get_sample_value("noble_batch_size_requests_sum", {"surrogate": "t"})
    count = metrics.registry.get_sample_value("noble_batch_size_requests_count", {"surrogate": "t"})
    assert hist == 32 and count == len(fn.calls)


def test_disabled_runs_one_pass_per_request(executor: ThreadPoolExecutor) -> None:
    fn = RowwiseAffine()

    async def main() -> list:
        b = MicroBatcher(fn, name="t", executor=executor, enabled=False)
        reqs = [_request(k, rows=3) for k in range(10)]
        return list(zip(reqs, await _run(b, reqs)))

    for (f, s), v in asyncio.run(main()):
        np.testing.assert_allclose(v, f[:, :1] * s + f[:, 1:2], rtol=1e-5, atol=1e-5)
    assert fn.calls == [3] * 10


def test_max_rows_bounds_every_batch_and_big_requests_go_alone(executor: ThreadPoolExecutor) -> None:
    fn = RowwiseAffine(delay_s=0.005)

    async def main() -> list:
        b = MicroBatcher(fn, name="t", executor=executor, max_rows=8, max_wait_s=0.05)
        reqs = [_request(k, rows=3) for k in range(10)] + [_request(99, rows=20)]
        out = await _run(b, reqs)
        await b.close()
        return list(zip(reqs, out))

    for (f, s), v in asyncio.run(main()):
        np.testing.assert_allclose(v, f[:, :1] * s + f[:, 1:2], rtol=1e-5, atol=1e-5)
    assert 20 in fn.calls  # the oversized request ran by itself
    assert all(c <= 8 for c in fn.calls if c != 20)
    assert sum(fn.calls) == 50


def test_an_error_reaches_its_batch_and_the_batcher_keeps_serving(executor: ThreadPoolExecutor) -> None:
    fn = RowwiseAffine(fail_on=3.0)

    async def main() -> tuple[list, np.ndarray]:
        b = MicroBatcher(fn, name="t", executor=executor, max_rows=512, max_wait_s=0.05)
        out = await _run(b, [_request(k, rows=1) for k in range(4)])  # k=2 has feature 3.0
        f, s = _request(7, rows=2)
        later = await b.submit(f, s)
        await b.close()
        return out, later - (f[:, :1] * s + f[:, 1:2])

    out, diff = asyncio.run(main())
    assert any(isinstance(o, ValueError) for o in out)
    assert np.max(np.abs(diff)) < 1e-5


def test_a_cancelled_request_does_not_disturb_the_others(executor: ThreadPoolExecutor) -> None:
    fn = RowwiseAffine(delay_s=0.01)

    async def main() -> list:
        b = MicroBatcher(fn, name="t", executor=executor, max_rows=512, max_wait_s=0.05)
        reqs = [_request(k, rows=2) for k in range(6)]
        tasks = [asyncio.ensure_future(b.submit(f, s)) for f, s in reqs]
        await asyncio.sleep(0)
        tasks[1].cancel()
        out = await asyncio.gather(*tasks, return_exceptions=True)
        await b.close()
        return list(zip(reqs, out))

    res = asyncio.run(main())
    assert isinstance(res[1][1], asyncio.CancelledError)
    for k, ((f, s), v) in enumerate(res):
        if k != 1:
            np.testing.assert_allclose(v, f[:, :1] * s + f[:, 1:2], rtol=1e-5, atol=1e-5)


def test_mismatched_rows_are_refused(executor: ThreadPoolExecutor) -> None:
    async def main() -> None:
        b = MicroBatcher(RowwiseAffine(), name="t", executor=executor)
        with pytest.raises(ValueError):
            await b.submit(np.zeros((2, 2)), np.zeros((3, 5)))

    asyncio.run(main())
