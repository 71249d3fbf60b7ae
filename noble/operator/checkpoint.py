"""Surrogate checkpoints: a directory with weights.safetensors, config.json and card.json.

Loading reads json and safetensors only: no pickled code runs. Training state for resuming
(train_state/ : optimizer and scheduler state via torch.save, read back with weights_only=True) sits beside
them and is not needed for inference.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .config import SurrogateConfig
from .model import NobleOperator, Surrogate

WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
CARD = "card.json"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    out = {"noble": __version__, "python": platform.python_version()}
    for pkg in ("torch", "neuraloperator", "numpy", "brian2", "efel", "safetensors", "scipy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def save_checkpoint(directory: str | Path, net: NobleOperator, config: SurrogateConfig,
                    card: dict[str, Any] | None = None) -> Path:
    """Write weights (safetensors), config.json and card.json; each file replaced atomically."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items() if isinstance(v, torch.Tensor)}
    tmp = d / f".{WEIGHTS}.tmp-{os.getpid()}"
    save_file(tensors, str(tmp), metadata={"format": "pt", "name": config.name})
    os.replace(tmp, d / WEIGHTS)
    _atomic_write_text(d / CONFIG, config.model_dump_json(indent=1) + "\n")
    if card is not None:
        _atomic_write_text(d / CARD, json.dumps(card, indent=1, sort_keys=False, default=float) + "\n")
    return d


def read_config(directory: str | Path) -> SurrogateConfig:
    path = Path(directory) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"no {CONFIG} in {directory}: not a surrogate checkpoint")
    return SurrogateConfig.model_validate_json(path.read_text())


def read_card(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CARD
    return json.loads(path.read_text()) if path.is_file() else {}


def load_network(directory: str | Path, config: SurrogateConfig | None = None) -> NobleOperator:
    """Rebuild the network from config.json and fill it from weights.safetensors (strict key match)."""
    d = Path(directory)
    config = config or read_config(d)
    net = NobleOperator(config)
    state = load_file(str(d / WEIGHTS))
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("_metadata")]
    if missing or unexpected:
        raise ValueError(f"checkpoint {d} does not match its config: missing {missing}, unexpected {unexpected}")
    return net


def load_surrogate(path: str | Path, device: str = "cpu", batch_size: int = 32) -> Surrogate:
    """Load a checkpoint directory into a ready-to-predict Surrogate (eval mode)."""
    d = Path(path)
    config = read_config(d)
    net = load_network(d, config)
    return Surrogate(net, config, read_card(d), path=d, device=device, batch_size=batch_size)


def default_surrogate_path() -> Path:
    """The shipped default checkpoint: the fast-spiking HH population (noble/assets/hh_fs)."""
    return Path(__file__).resolve().parent.parent / "assets" / "hh_fs"


def shipped_surrogate_paths() -> dict[str, Path]:
    """Every shipped checkpoint (noble/assets/NAME with config.json and weights): name -> directory."""
    root = default_surrogate_path().parent
    return {d.name: d for d in sorted(root.iterdir()) if (d / CONFIG).is_file() and (d / WEIGHTS).is_file()}


def resolve_surrogate(name_or_path: str | Path | None) -> Path:
    """A checkpoint directory from a shipped surrogate's name, a path, or None (the default)."""
    if name_or_path is None:
        return default_surrogate_path()
    shipped = shipped_surrogate_paths()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    path = Path(name_or_path)
    if (path / CONFIG).is_file():
        return path
    raise ValueError(f"no surrogate {str(name_or_path)!r}: not a checkpoint directory nor a shipped surrogate "
                     f"({sorted(shipped)})")

