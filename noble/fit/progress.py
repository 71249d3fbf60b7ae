"""A fit's progress as a small JSON file, rewritten atomically as the fit advances, so another process (the
service's job runner) can follow a `noble fit` subprocess generation by generation."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from noble.io._atomic import atomic_path

# Share of the whole fit each stage covers on the progress bar (the solver is where the time goes).
STAGE_SPAN = {"surrogate": (0.0, 0.05), "solver": (0.05, 0.9), "polish": (0.9, 0.98), "done": (1.0, 1.0)}


class ProgressFile:
    """`progress(stage, fraction)` callback of `fit_recording` that writes {stage, fraction, overall,
    generation, generations, message} to `path` (at most every `min_interval_s`, always at stage changes)."""

    def __init__(self, path: str | Path, config: Any, min_interval_s: float = 0.25) -> None:
        self.path = Path(path)
        self.generations = max(1, int(config.solver.max_generations))
        self.polish_generations = max(1, int(config.polish.generations))
        self.min_interval_s = min_interval_s
        self._last = (None, -1.0)
        self._last_t = 0.0

    def __call__(self, stage: str, fraction: float) -> None:
        now = time.monotonic()
        stage_changed = stage != self._last[0]
        if not stage_changed and now - self._last_t < self.min_interval_s and fraction < 1.0:
            return
        lo, hi = STAGE_SPAN.get(stage, (0.0, 1.0))
        fraction = min(1.0, max(0.0, float(fraction)))
        doc: dict[str, Any] = {"stage": stage, "fraction": fraction, "overall": lo + (hi - lo) * fraction}
        if stage == "solver":
            doc["generation"] = int(round(fraction * self.generations))
            doc["generations"] = self.generations
            doc["message"] = f"solver: generation {doc['generation']} of {self.generations}"
        elif stage == "polish":
            doc["message"] = "feasibility polish"
        elif stage == "surrogate":
            doc["message"] = "surrogate stage"
        else:
            doc["message"] = "writing results" if stage == "done" else stage
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            Path(tmp).write_text(json.dumps(doc))
        self._last = (stage, fraction)
        self._last_t = now


def read_progress(path: str | Path) -> dict[str, Any] | None:
    """The last progress written to path, or None (absent or mid-replace)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
