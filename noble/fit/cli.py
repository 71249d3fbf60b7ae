"""`noble fit RECORDING [--sweeps ...] [--out DIR]`: fit the hh family to a recording (two stages), writing
fit.json, an overlay PNG and an NWB file of the fitted responses into DIR."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Fit neuron models to current-clamp recordings.")
console = Console(stderr=True)


def _parse_sweeps(values: Optional[List[str]]) -> Optional[list[int]]:
    """'--sweeps 3 4 5', '--sweeps 3,4,5' or ranges '--sweeps 3-9'."""
    if not values:
        return None
    out: list[int] = []
    for v in values:
        for part in str(v).split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                a, b = part.split("-", 1)
                out.extend(range(int(a), int(b) + 1))
            else:
                out.append(int(part))
    return out


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is at the time (not the stream of the first call)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


def _log_progress() -> None:
    """Progress lines of the fit (noble.fit loggers) on stderr, once per process."""
    logger = logging.getLogger("noble.fit")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(logging.INFO)


@app.command("fit")
def fit_cmd(
    recording: Path = typer.Argument(..., help="ABF, NWB, CSV or NPZ current-clamp recording"),
    sweeps: Optional[List[str]] = typer.Option(None, "--sweeps", "-s",
                                               help="sweep indices to fit (e.g. 4,5,6 or 4-12); default all"),
    out: Path = typer.Option(Path("fit_out"), "--out", "-o", help="output directory"),
    surrogate: Optional[Path] = typer.Option(None, "--surrogate", help="surrogate checkpoint directory"),
    no_surrogate: bool = typer.Option(False, "--no-surrogate", help="solver only, cold start from a preset"),
    require_surrogate: bool = typer.Option(False, "--require-surrogate", help="fail if no surrogate can be loaded"),
    generations: Optional[int] = typer.Option(None, "--generations", "-g", min=0, max=10000,
                                              help="CMA-ES generations (default from the config)"),
    popsize: Optional[int] = typer.Option(None, "--popsize", min=4, max=256),
    seed: int = typer.Option(0, "--seed", min=0),
    restarts: Optional[int] = typer.Option(None, "--restarts", min=1, max=16,
                                           help="independent CMA-ES runs, best reported (default 1)"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, max=64,
                                          help="processes for the search (default: the CPUs; one run splits "
                                               "each generation over them)"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help=(
        "Dask scheduler address (tcp://host:port): evaluate the search's candidates (and the polish runs) on "
        "that cluster's workers")),
    no_uncertainty: bool = typer.Option(False, "--no-uncertainty", help="skip the posterior probes (faster)"),
    final_dt: Optional[float] = typer.Option(None, "--final-dt", min=0.005, max=0.1,
                                             help="integration step (ms) of the reported fit (default 0.025)"),
    polish: Optional[int] = typer.Option(None, "--polish", min=0, max=1000,
                                         help="feasibility-polish generations when the fit misses an acceptance "
                                              "check (default 24; 0: off)"),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", min=0, max=86400, help=(
        "wall-clock budget of the fit in seconds (default 160: 3 minutes on 2 cores with the outputs); 0: none, "
        "the generation budgets alone (reproducible on any machine)")),
    config: Optional[Path] = typer.Option(None, "--config", help="FitConfig as JSON/YAML"),
    progress_file: Optional[Path] = typer.Option(None, "--progress-file",
                                                 help="keep a JSON file of the fit's stage and generation up to "
                                                      "date (what the service's fit jobs report)"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Fit RECORDING; prints a summary and writes fit.json, <name>_fit.png, <name>_fit.nwb and (with the surrogate
    stage) <name>_surrogate.nwb into --out."""
    import yaml
    from pydantic import ValidationError

    from noble.io import RecordingError

    from .api import FitConfig, fit_recording
    from .progress import ProgressFile
    from .report import write_outputs
    from .surrogate_stage import SurrogateUnavailable

    try:
        raw = yaml.safe_load(config.read_text()) if config else {}
        cfg = FitConfig.model_validate(raw or {})
        upd: dict = {"sweeps": _parse_sweeps(sweeps) or cfg.sweeps}
        if surrogate is not None:
            upd["surrogate"] = str(surrogate)
        if no_surrogate and require_surrogate:
            raise typer.BadParameter("--no-surrogate and --require-surrogate exclude each other")
        if no_surrogate:
            upd["stage1"] = "off"
        elif require_surrogate:
            upd["stage1"] = "on"
        solver = cfg.solver.model_copy(update={k: v for k, v in {"max_generations": generations,
                                                                   "popsize": popsize, "seed": seed}.items()
                                               if v is not None})
        if no_uncertainty:
            solver = solver.model_copy(update={"probe": False})
        if final_dt is not None:
            upd["final_dt_ms"] = final_dt
        if restarts is not None:
            upd["restarts"] = restarts
        if workers is not None:
            upd["workers"] = workers
        if scheduler is not None:
            upd["scheduler"] = scheduler
        if time_budget is not None:
            upd["time_budget_s"] = time_budget or None
        if polish is not None:
            upd["polish"] = cfg.polish.model_copy(update={"generations": polish}).model_dump()
        upd["solver"] = solver
        cfg = FitConfig.model_validate({**cfg.model_dump(), **{k: v for k, v in upd.items() if k != "solver"},
                                        "solver": solver.model_dump()})
    except (ValidationError, ValueError, OSError, yaml.YAMLError) as exc:
        console.print(f"[red]bad configuration: {exc}[/red]")
        raise typer.Exit(2)
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # pyparsing/brian2 deprecation chatter
    logging.getLogger("py.warnings").setLevel(logging.ERROR)
    if not quiet:
        _log_progress()
    try:
        progress = ProgressFile(progress_file, cfg) if progress_file is not None else None
        result = fit_recording(recording, cfg, progress=progress)
        files = write_outputs(result, out)
    except RecordingError as exc:
        console.print(f"[red]cannot fit {recording}: {exc}[/red]")
        raise typer.Exit(2)
    except SurrogateUnavailable as exc:
        console.print(f"[red]surrogate stage unavailable: {exc}[/red]")
        raise typer.Exit(3)
    summary = {
        "recording": str(recording), "objective": result.objective, "checks_all_ok": result.checks["all_ok"],
        "spike_counts_ok": result.checks["spike_counts_ok"],
        "rheobase_pA": {"data": result.checks["rheobase"]["data_pA"], "model": result.checks["rheobase"]["model_pA"]},
        "rest_mV": {"data": result.checks["rest"]["data_mV"], "model": result.checks["rest"]["model_mV"]},
        "physiology": ({k: result.physiology["summary"][k] for k in ("all_ok", "n_ok", "n_fail", "n_not_judged",
                                                                      "failed")} if result.physiology else None),
        "stage1": result.stage1.get("status"), "timing_s": {k: round(v, 2) for k, v in result.timing_s.items()},
        "files": files,
    }
    typer.echo(json.dumps(summary, indent=1))
    if result.physiology and not quiet:
        from .physiology import table

        print("physiology checks (fit.json 'physiology'):\n" + table(result.physiology), file=sys.stderr)
    for note in result.notes:
        console.print(f"[yellow]note: {note}[/yellow]")
