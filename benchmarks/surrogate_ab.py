"""Side by side: surrogate throughput of several (source tree, checkpoint) arms, in alternating processes.

One machine's speed drifts by +-15 % within minutes, so two versions are compared in rounds: every arm runs once per
round in its own fresh process (the same features and steps, batch 256 in chunks of 32, 1 torch thread, the median of
5 calls), and the figure per arm is the median over rounds. An arm is `CKPT` (this tree's code) or `TREE:CKPT` (the
code of another checkout of this repository, e.g. `git worktree add /tmp/old <commit>`; CKPT relative to that tree
unless absolute).

    python benchmarks/surrogate_ab.py /tmp/old:noble/assets/hh_mc_fs /tmp/old_ckpt noble/assets/hh_mc_fs --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import os, sys, time, json
tree = os.environ["AB_TREE"]
# this repository's editable install maps `noble` to its own tree: drop that finder to import the arm's code
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, tree)
import numpy as np, torch
torch.set_num_threads(1)
import noble
from noble.operator.checkpoint import load_surrogate
from noble.operator.sample import draw_features
assert os.path.dirname(noble.__file__) == os.path.join(tree, "noble"), noble.__file__
sur = load_surrogate(os.environ["AB_CKPT"])
sur.batch_size = 32
rng = np.random.default_rng(0)
n = 256
feats = draw_features(sur, n, rng)
lo, hi = min(sur.config.stimulus.amplitudes_pA), max(sur.config.stimulus.amplitudes_pA)
stim = np.stack([sur.step_stimulus(a) for a in rng.uniform(max(lo, 0.0), hi, size=n)])
sur.predict(feats, stim, check_range=False)
ts = []
for _ in range(5):
    t0 = time.perf_counter()
    sur.predict(feats, stim, check_range=False)
    ts.append(time.perf_counter() - t0)
print(json.dumps({"traces_per_s": n / float(np.median(ts))}))
"""


def parse_arm(arm: str) -> tuple[Path, Path]:
    """(source tree, checkpoint) of `CKPT` or `TREE:CKPT`."""
    tree, _, ckpt = arm.rpartition(":")
    tree_path = Path(tree).resolve() if tree else ROOT
    ckpt_path = Path(ckpt)
    if not ckpt_path.is_absolute():
        ckpt_path = (tree_path / ckpt_path) if tree else ckpt_path.resolve()
    return tree_path, ckpt_path


def run_arm(tree: Path, ckpt: Path) -> float:
    env = dict(os.environ, AB_TREE=str(tree), AB_CKPT=str(ckpt), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["traces_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("arms", nargs="+", help="CKPT or TREE:CKPT")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    arms = [parse_arm(a) for a in args.arms]
    runs: dict[str, list[float]] = {a: [] for a in args.arms}
    for r in range(args.rounds):
        for label, (tree, ckpt) in zip(args.arms, arms):
            runs[label].append(run_arm(tree, ckpt))
            print(f"round {r + 1}: {label:50s} {runs[label][-1]:8.1f} traces/s", flush=True)
    print("median over rounds (batch 256, 1 thread):")
    for label in args.arms:
        print(f"  {label:50s} {statistics.median(runs[label]):8.1f} traces/s")
    if args.json:
        args.json.write_text(json.dumps({"rounds": runs, "median": {k: statistics.median(v) for k, v in runs.items()}},
                                        indent=1))


if __name__ == "__main__":
    main()
