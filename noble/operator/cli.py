"""`noble train | evaluate | sample`: the surrogate's commands (mounted at the top level by noble/cli.py).

Heavy imports (torch, neuraloperator) happen inside the commands so `noble --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True, help="Train, evaluate and sample the NOBLE surrogate.")
console = Console(stderr=True)


@app.command("train")
def train_cmd(
    dataset: Path = typer.Argument(..., help="dataset directory (manifest.json + shards)"),
    out: Path = typer.Option(..., "--out", "-o", help="checkpoint directory (resumed if it holds a run)"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="training config (YAML)"),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="override the config's epochs"),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="override the config's seed"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu (default) or cuda"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Train a surrogate (held-out split by neuron model); a checkpoint is written after every epoch."""
    from .config import load_train_config
    from .evaluate import format_dataset_table
    from .train import train

    try:
        cfg = load_train_config(config)
        update = {k: v for k, v in {"epochs": epochs, "seed": seed, "device": device}.items() if v is not None}
        cfg = cfg.model_validate({**cfg.model_dump(), **update})
        result = train(dataset, out, cfg, progress=not quiet)
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)
    card = json.loads((out / "card.json").read_text())
    console.print(f"{out}: {result.epochs_done} epochs (resumed from {result.resumed_from})")
    if "metrics_heldout" in card:
        typer.echo(format_dataset_table({"overall": card["metrics_heldout"],
                                 "per_amplitude": card["metrics_heldout_per_amplitude"]}))


@app.command("evaluate")
def evaluate_cmd(
    ckpt: Path = typer.Argument(..., metavar="CKPT", help="checkpoint directory"),
    dataset_arg: Optional[Path] = typer.Argument(None, metavar="[DATASET]",
                                                 help="dataset directory (optional; same as --dataset)"),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help=(
        "dataset directory: only needed when hall_of_fame.json beside the checkpoint lacks the held-out "
        "models, or to evaluate every model of another dataset")),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help=(
        "write metrics.json, evaluation.png and evaluation_gallery.png here")),
    seed: int = typer.Option(0, "--seed", min=0, help="seed of the noisy trial's OU noise"),
    gallery_seed: int = typer.Option(0, "--gallery-seed", min=0, help="seed of the gallery's random traces"),
    update_card: bool = typer.Option(False, "--update-card", help=(
        "write the noise-free figures into the checkpoint's card.json (metrics_heldout_noisefree), which "
        "/v1/models and the explorer show")),
) -> None:
    """Held-out neurons simulated by Brian2 (noise-free and with the dataset's noise) on the surrogate's
    protocol, compared with the surrogate: voltage rel L2, spike counts, F-I, spike times, matched-AP peak,
    half-width and AHP, AP peak spread, pre-step baseline; per amplitude and overall."""
    from .evaluate import format_table, run_evaluation

    if dataset_arg is not None and dataset is not None and dataset_arg != dataset:
        console.print("[red]give the dataset once: as DATASET or as --dataset[/red]")
        raise typer.Exit(2)
    try:
        report = run_evaluation(ckpt, dataset or dataset_arg, out, seed=seed, gallery_seed=gallery_seed)
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)
    typer.echo(f"{report['models']} ({report['neurons_from']}); simulated with {report['simulation']['settings_from']}")
    typer.echo(format_table(report))
    typer.echo(f"wall time {report['wall_s']['total']:.1f} s (simulate {report['wall_s']['simulate']:.1f} s, "
               f"predict {report['wall_s']['predict']:.1f} s, metrics {report['wall_s']['metrics']:.1f} s)")
    if out is not None:
        console.print(f"wrote {out / 'metrics.json'}, {out / 'evaluation.png'} and {out / 'evaluation_gallery.png'}")
    if update_card:
        from .checkpoint import CARD, _atomic_write_text, read_card

        card = read_card(ckpt)
        card["metrics_heldout_noisefree"] = {**report["overall"], "reference": report["reference"],
                                             "models": report["models"], "simulation": report["simulation"]}
        _atomic_write_text(ckpt / CARD, json.dumps(card, indent=1, default=float) + "\n")
        console.print(f"updated {ckpt / CARD}")


@app.command("sample")
def sample_cmd(
    ckpt: Optional[Path] = typer.Argument(None, help="checkpoint directory (default: the shipped hh_fs)"),
    surrogate: Optional[str] = typer.Option(None, "--surrogate", "-s",
                                            help="a shipped surrogate by name (noble/assets: hh_fs, ...)"),
    amplitude_pA: float = typer.Option(..., "--amplitude-pA", help="step amplitude (pA) of the trained protocol"),
    n: int = typer.Option(16, "--n", min=1, max=100_000, help="neurons to sample"),
    seed: int = typer.Option(0, "--seed", min=0),
    feature: Optional[list[str]] = typer.Option(None, "--feature", help="fix a feature: NAME=VALUE (repeatable)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write traces, bands and statistics (.npz)"),
    extrapolate: bool = typer.Option(False, "--extrapolate",
                                     help="allow an amplitude outside the trained ones (refused otherwise)"),
) -> None:
    """Sample n neurons of the trained cell class at one step amplitude; print spike statistics.
    An amplitude outside the checkpoint's trained amplitudes is refused unless --extrapolate."""
    import numpy as np
    from rich.markup import escape

    from .checkpoint import load_surrogate, resolve_surrogate
    from .domain import OutsideTrainedDomain, check_stimulus_domain
    from .sample import sample

    fixed = {}
    for item in feature or []:
        name, _, value = item.partition("=")
        try:
            fixed[name.strip()] = float(value)
        except ValueError:
            console.print(f"[red]--feature {item!r}: expected NAME=VALUE[/red]")
            raise typer.Exit(2)
    try:
        if ckpt is not None and surrogate is not None:
            raise ValueError("give a checkpoint directory or --surrogate NAME, not both")
        sur = load_surrogate(resolve_surrogate(ckpt or surrogate))
        warnings = check_stimulus_domain(sur.config, amplitude_pA, extrapolate=extrapolate)
        res = sample(sur, amplitude_pA, n, seed, features=fixed or None)
    except OutsideTrainedDomain as exc:
        console.print(f"[red]--amplitude-pA: {escape(exc.message)}; pass --extrapolate to sample there "
                      "anyway[/red]", soft_wrap=True)
        raise typer.Exit(2)
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)
    for w in warnings:
        console.print(f"[yellow]warning: {escape(w)}[/yellow]", soft_wrap=True)
    lat = res.first_spike_latency_ms
    summary = {
        "surrogate": sur.name, "amplitude_pA": amplitude_pA, "n": n, "seed": seed,
        "spike_count": {"mean": float(res.spike_counts.mean()), "q05": float(np.quantile(res.spike_counts, 0.05)),
                        "q50": float(np.median(res.spike_counts)), "q95": float(np.quantile(res.spike_counts, 0.95))},
        "first_spike_latency_ms": {"n_spiking": int(np.isfinite(lat).sum()),
                                   "median": float(np.nanmedian(lat)) if np.isfinite(lat).any() else None},
        "extrapolated": bool(warnings),
    }
    typer.echo(json.dumps(summary, indent=1))
    if out is not None:
        np.savez_compressed(out, t_ms=res.t_ms, v_mV=res.v_mV, features=res.features,
                            feature_names=np.array(res.feature_names), stim_pA=res.stim_pA,
                            spike_counts=res.spike_counts, first_spike_latency_ms=lat,
                            extrapolated=np.bool_(bool(warnings)),
                            **{f"band_{k}": v for k, v in res.bands.items()})
        console.print(f"wrote {out}")
