"""Where a surrogate's batch call spends its time, by stage of `NobleOperator` (FNO, learned prior, phase channels,
rendering and its parts), and: every shipped surrogate's outputs saved, or compared with a saved set, to show that an
inference change leaves them as they were.

    python benchmarks/surrogate_stages.py --ckpt noble/assets/hh_mc_fs            # stage shares, batch 256, 1 thread
    python benchmarks/surrogate_stages.py --save /tmp/before.npz                  # 64 random neurons per surrogate
    python benchmarks/surrogate_stages.py --compare /tmp/before.npz               # max |difference| (mV) per surrogate

Stage times are wall time inside each wrapped call, summed over the chunks of `predict`; nested stages (the
rendering's parts) are also inside their parent. One run: the box's noise is ~15 %.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SURROGATES = ("hh_fs", "hh_rs", "hh_lts", "hh_mc_fs")
RENDER_PARTS = ("paste_aps", "phase_spikes", "quiet_at", "upsample_linear", "sample_at")


def stage_times(ckpt: str, n: int, repeats: int, seed: int) -> tuple[float, dict[str, float]]:
    """(seconds per batch call, seconds per stage per call) for n random neurons at random trained amplitudes."""
    import torch

    import noble.operator.model as model_module
    from noble.operator.checkpoint import load_surrogate
    from noble.operator.sample import draw_features

    torch.set_num_threads(1)
    sur = load_surrogate(ckpt)
    rng = np.random.default_rng(seed)
    feats = draw_features(sur, n, rng)
    amps = rng.choice(np.asarray(sur.config.stimulus.amplitudes_pA, dtype=float), size=n)
    stim = np.stack([sur.step_stimulus(a) for a in amps])
    spent: dict[str, float] = defaultdict(float)

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t0
        return run

    net = sur.net
    model_module.fno_with_constant_channels = timed("fno", model_module.fno_with_constant_channels)
    for name in RENDER_PARTS:
        setattr(model_module, name, timed(name, getattr(model_module, name)))
    for name in ("operator", "prior_phase", "phase_channels", "render"):
        setattr(net, name, timed(name, getattr(net, name)))
    net.decoder.forward = timed("decoder", net.decoder.forward)
    sur.predict(feats, stim)
    spent.clear()
    t0 = time.perf_counter()
    for _ in range(repeats):
        sur.predict(feats, stim)
    total = (time.perf_counter() - t0) / repeats
    return total, {k: v / repeats for k, v in spent.items()}


def outputs(seed: int = 3, n: int = 64) -> dict[str, np.ndarray]:
    """Every shipped surrogate's voltage for n random neurons at random trained amplitudes (1 thread)."""
    import torch

    from noble.operator.checkpoint import load_surrogate
    from noble.operator.sample import draw_features

    torch.set_num_threads(1)
    out = {}
    for name in SURROGATES:
        sur = load_surrogate(ROOT / "noble" / "assets" / name)
        rng = np.random.default_rng(seed)
        feats = draw_features(sur, n, rng)
        amps = rng.choice(sorted(sur.config.stimulus.amplitudes_pA), n)
        out[name] = sur.predict(feats, np.stack([sur.step_stimulus(a) for a in amps]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=str(ROOT / "noble" / "assets" / "hh_mc_fs"))
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", type=Path, default=None, help="save every shipped surrogate's outputs (npz)")
    ap.add_argument("--compare", type=Path, default=None, help="compare them with a saved set")
    args = ap.parse_args()
    if args.save or args.compare:
        now = outputs()
        if args.save:
            np.savez(args.save, **now)
            print(f"saved {', '.join(now)} to {args.save}")
        if args.compare:
            before = np.load(args.compare)
            for name, v in now.items():
                d = np.abs(v - before[name])
                print(f"{name:9s} max |difference| {d.max():.3g} mV, samples more than 0.01 mV apart: "
                      f"{int((d > 0.01).sum())} of {d.size}")
        return
    total, spent = stage_times(args.ckpt, args.n, args.repeats, args.seed)
    print(f"{args.ckpt}: {total:.3f} s per batch of {args.n} = {args.n / total:.1f} traces/s (1 thread)")
    for name, sec in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {name:16s} {sec * 1000:8.1f} ms  {100 * sec / total:5.1f} %")


if __name__ == "__main__":
    main()
