"""Loaded surrogates: the shipped default plus NOBLE_SURROGATE_DIRS, each with its own micro-batcher.

A succeeded train job's checkpoint is served as surrogate `job-<id>`, loaded on first use.
Sampling runs `noble.operator.sample` in a worker thread on a view of the surrogate whose `predict` goes
through the batcher on the event loop, so concurrent requests share forward passes without the service
re-implementing how features are drawn or bands computed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..operator.domain import amplitude_range, trained_amplitudes
from .batcher import MicroBatcher

if TYPE_CHECKING:
    from ..config import Settings
    from .metrics import Metrics

log = logging.getLogger(__name__)

JOB_SURROGATE = re.compile(r"^job-([0-9a-f]{32})$")


_EFEL_LOCK = threading.Lock()


def serialize_efel() -> None:
    """eFEL keeps its settings and traces in process-global state, so concurrent `trace_features` calls from
    the sample threads corrupt each other (IndexError deep in eFEL). Wrap it in one process-wide lock, in
    `noble.datagen.features` and in the operator module that imported it by name. Idempotent; a no-op once
    features.py marks its function `_thread_safe`."""
    from ..datagen import features

    fn = features.trace_features
    if getattr(fn, "_thread_safe", False):
        return

    @functools.wraps(fn)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _EFEL_LOCK:
            return fn(*args, **kwargs)

    locked._thread_safe = True  # type: ignore[attr-defined]
    features.trace_features = locked
    try:
        import importlib

        opsample = importlib.import_module("noble.operator.sample")
        if getattr(opsample, "trace_features", None) is fn:
            opsample.trace_features = locked
    except ImportError:  # pragma: no cover
        pass


def operator_api() -> Any | None:
    """The `noble.operator` module when it provides the serving API, else None."""
    try:
        import noble.operator as op
    except ImportError:  # pragma: no cover
        return None
    if all(hasattr(op, n) for n in ("load_surrogate", "sample")):
        return op
    return None


def default_checkpoint(settings: "Settings") -> Path | None:
    if settings.default_surrogate:
        return Path(settings.default_surrogate)
    op = operator_api()
    fn = getattr(op, "default_surrogate_path", None) if op is not None else None
    if fn is None:
        return None
    try:
        path = fn()
    except Exception as exc:  # noqa: BLE001 - no shipped default is a state, not a crash
        log.warning("no default surrogate: %s", exc)
        return None
    return Path(path) if path else None


def _is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file()


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if np.isfinite(v) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    return str(x)


@dataclass
class LoadedSurrogate:
    name: str
    path: Path
    surrogate: Any
    batcher: MicroBatcher

    @property
    def config(self) -> Any:
        return self.surrogate.config

    @property
    def feature_names(self) -> list[str]:
        return list(self.config.feature_names)

    def feature_ranges(self) -> dict[str, tuple[float, float]]:
        rng = self.config.feature_ranges
        if isinstance(rng, dict):
            return {k: (float(v[0]), float(v[1])) for k, v in rng.items()}
        return {n: (float(v[0]), float(v[1])) for n, v in zip(self.feature_names, rng)}

    @property
    def dt_ms(self) -> float:
        return float(self.config.dt_ms)

    @property
    def n_time(self) -> int:
        return int(self.config.n_time)

    def stimulus_window_ms(self) -> tuple[float, float]:
        stim = getattr(self.config, "stimulus", None)
        start = float(getattr(stim, "start_ms", 0.0)) if stim is not None else 0.0
        dur = float(getattr(stim, "duration_ms", self.n_time * self.dt_ms)) if stim is not None else self.n_time * self.dt_ms
        return start, dur

    def describe(self, default: bool) -> dict[str, Any]:
        cfg = self.config
        card = dict(getattr(self.surrogate, "card", None) or {})
        start, dur = self.stimulus_window_ms()
        metrics = card.get("metrics_heldout") or card.get("metrics") or {}
        if card.get("metrics_heldout_per_amplitude"):
            metrics = {"overall": metrics, "per_amplitude": card["metrics_heldout_per_amplitude"]}
        if card.get("metrics_heldout_noisefree"):  # `noble evaluate`: against noise-free solver traces
            metrics = {**(metrics if "overall" in metrics else {"overall": metrics}),
                       "noise_free": card["metrics_heldout_noisefree"]}
        units = list(getattr(cfg, "feature_units", []) or [])
        rng = amplitude_range(cfg)
        return _jsonable({
            "name": self.name,
            "default": default,
            "family": getattr(cfg, "family", None),
            "preset": getattr(cfg, "preset", None),
            "cell_class": card.get("cell_class") or getattr(cfg, "preset", None) or getattr(cfg, "family", None),
            "feature_names": self.feature_names,
            "feature_units": units,
            "feature_ranges": {k: list(v) for k, v in self.feature_ranges().items()},
            "dt_ms": self.dt_ms,
            "n_time": self.n_time,
            "duration_ms": self.dt_ms * self.n_time,
            "stimulus_start_ms": start,
            "stimulus_duration_ms": dur,
            "stimulus_kinds": ["step", "waveform"],
            "trained_amplitudes_pA": trained_amplitudes(cfg),
            "amplitude_range_pA": list(rng) if rng is not None else None,
            "heldout_metrics": metrics,
            "speed": card.get("speed"),
            # the held-out targets, each with its figure and the factor it misses by (noble/operator/targets.py)
            "targets": (card.get("metrics_heldout_noisefree") or {}).get("waveform_targets"),
            "card": card,
        })


class _BatchedView:
    """The surrogate as `noble.operator.sample` sees it, with predict() routed through the batcher."""

    def __init__(self, loaded: LoadedSurrogate, loop: asyncio.AbstractEventLoop) -> None:
        self._loaded = loaded
        self._loop = loop

    def predict(self, features: Any, stim_pA: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        if args or kwargs:  # an option the batcher does not know: run it directly
            return self._loaded.surrogate.predict(features, stim_pA, *args, **kwargs)
        f = np.asarray(features, dtype=np.float64)
        s = np.asarray(stim_pA, dtype=np.float32)
        if f.ndim != 2 or s.ndim != 2 or s.shape[1] != self._loaded.n_time:
            return self._loaded.surrogate.predict(features, stim_pA)
        if s.shape[0] == 1 and f.shape[0] > 1:  # one stimulus for every neuron
            s = np.broadcast_to(s, (f.shape[0], s.shape[1]))
        fut = asyncio.run_coroutine_threadsafe(self._loaded.batcher.submit(f, s), self._loop)
        return fut.result()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loaded.surrogate, name)


class SurrogateRegistry:
    """Name -> LoadedSurrogate; `get(None)` is the default."""

    def __init__(self, settings: "Settings", forward_executor: Executor, metrics: "Metrics") -> None:
        self.settings = settings
        self.forward_executor = forward_executor
        self.metrics = metrics
        self.items: dict[str, LoadedSurrogate] = {}
        self.default_name: str | None = None
        self.errors: list[str] = []
        self._load_lock: asyncio.Lock | None = None

    def _candidates(self) -> list[tuple[Path, bool]]:
        out: list[tuple[Path, bool]] = []
        default = default_checkpoint(self.settings)
        if default is not None:
            out.append((default, True))
        op = operator_api()
        shipped = getattr(op, "shipped_surrogate_paths", None) if op is not None else None
        if shipped is not None and self.settings.load_shipped_surrogates:  # every shipped population, by name
            seen = {default.resolve()} if default is not None else set()
            out.extend((p, False) for p in shipped().values() if p.resolve() not in seen)
        for d in self.settings.surrogate_dir_list():
            if _is_checkpoint(d):
                out.append((d, False))
            elif d.is_dir():
                out.extend((sub, False) for sub in sorted(d.iterdir()) if _is_checkpoint(sub))
            else:
                self.errors.append(f"NOBLE_SURROGATE_DIRS entry {str(d)!r} is not a directory")
        return out

    def load_all(self) -> None:
        """Load every checkpoint (blocking; called in a thread at startup)."""
        op = operator_api()
        if op is not None:
            serialize_efel()
            if self.settings.torch_threads:
                import torch

                torch.set_num_threads(self.settings.torch_threads)
        candidates = self._candidates()
        if op is None:
            if candidates:
                self.errors.append("noble.operator has no load_surrogate/sample: surrogates not loaded")
            return
        for path, is_default in candidates:
            if not _is_checkpoint(path):
                self.errors.append(f"no surrogate checkpoint at {path}")
                continue
            try:
                self.add(op.load_surrogate(path), path, default=is_default)
            except Exception as exc:  # noqa: BLE001 - a broken checkpoint must not stop the server
                log.exception("could not load surrogate %s", path)
                self.errors.append(f"{path}: {type(exc).__name__}: {exc}")

    def add(self, surrogate: Any, path: Path, *, default: bool = False, name: str | None = None,
            may_be_default: bool = True) -> LoadedSurrogate:
        name = name or str(getattr(surrogate, "name", None) or getattr(surrogate.config, "name", None) or path.name)
        if name in self.items:
            name = f"{name}-{len(self.items)}"
        s = self.settings
        batcher = MicroBatcher(surrogate.predict, name=name, executor=self.forward_executor,
                               max_rows=s.batch_max_rows, max_wait_s=s.batch_max_wait_ms / 1000.0,
                               enabled=s.batch_enabled, metrics=self.metrics)
        loaded = LoadedSurrogate(name=name, path=path, surrogate=surrogate, batcher=batcher)
        self.items[name] = loaded
        if default or (self.default_name is None and may_be_default):
            self.default_name = name
        log.info("surrogate %s loaded from %s", name, path)
        return loaded

    def get(self, name: str | None) -> LoadedSurrogate | None:
        key = name or self.default_name
        return self.items.get(key) if key else None

    async def load_trained(self, name: str, store: Any, data_dir: Path) -> LoadedSurrogate | None:
        """`job-<id>`: the checkpoint of a succeeded train job, loaded on first use (then kept)."""
        m = JOB_SURROGATE.match(name)
        op = operator_api()
        if m is None or op is None:
            return None
        if self._load_lock is None:
            self._load_lock = asyncio.Lock()
        async with self._load_lock:
            if name in self.items:
                return self.items[name]
            job = await asyncio.to_thread(store.get, m.group(1))
            if job is None or job.kind != "train" or job.state != "succeeded":
                return None
            path = data_dir / "jobs" / job.id / "checkpoint"
            if not _is_checkpoint(path):
                return None
            surrogate = await asyncio.to_thread(op.load_surrogate, path)
            loaded = self.add(surrogate, path, name=name, may_be_default=False)
            loaded.batcher.start()
            return loaded

    def view(self, loaded: LoadedSurrogate, loop: asyncio.AbstractEventLoop) -> Any:
        return _BatchedView(loaded, loop)

    async def close(self) -> None:
        for item in self.items.values():
            await item.batcher.close()
