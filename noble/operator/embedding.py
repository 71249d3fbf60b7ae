"""NOBLE's frequency-modulated feature embedding (Ghafourpour et al. 2025; NeRF-style positional encoding).

Each per-neuron feature f_j is normalised over the training population, x_j = (f_j - low_j)/(high_j - low_j)
in [0, 1], then lifted to 2K numbers [sin(2^0 pi x_j), ..., sin(2^(K-1) pi x_j), cos(2^0 pi x_j), ...,
cos(2^(K-1) pi x_j)] (feature-major: all of feature 0's channels, then feature 1's, ...). The result is
constant in time and broadcast along the time axis, then stacked after the stimulus channel:
input channels = [stim_pA / stim_scale_pA, emb_0, ..., emb_{2KF-1}]  -> shape (B, 1 + 2KF, T).
With `fi_phase` the model appends [sin, cos](2 pi phi(t)) (`fi_phase` below), phi = the spikes the
neuron's F-I features predict for the stimulus so far.
Written in torch so it is differentiable (fitting can descend in feature space).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .config import EmbeddingConfig


def normalise(features: torch.Tensor, lows: torch.Tensor, highs: torch.Tensor) -> torch.Tensor:
    """(B, F) raw features -> (B, F) in [0, 1] over the training range."""
    return (features - lows) / (highs - lows)


def frequency_embedding(x: torch.Tensor, n_frequencies: int) -> torch.Tensor:
    """(B, F) normalised features -> (B, 2*K*F): per feature [sin(2^k pi x) for k<K] + [cos(2^k pi x) for k<K]."""
    freqs = (2.0 ** torch.arange(n_frequencies, dtype=x.dtype, device=x.device)) * math.pi  # (K,)
    arg = x[..., :, None] * freqs  # (B, F, K)
    emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)  # (B, F, 2K)
    return emb.reshape(*x.shape[:-1], -1)


def feature_embedding(features: torch.Tensor, cfg: EmbeddingConfig) -> torch.Tensor:
    """Raw features (B, F) -> the embedding channels (B, 2KF), constant in time."""
    if cfg.lows is None or cfg.highs is None:
        raise ValueError("embedding normalisers (lows/highs) are not set; fit them on the training population")
    lows = torch.as_tensor(cfg.lows, dtype=features.dtype, device=features.device)
    highs = torch.as_tensor(cfg.highs, dtype=features.dtype, device=features.device)
    return frequency_embedding(normalise(features, lows, highs), cfg.n_frequencies)


def embed_inputs(features: torch.Tensor, stim: torch.Tensor, cfg: EmbeddingConfig) -> torch.Tensor:
    """Raw features (B, F) and the (already scaled) stimulus channel (B, T) -> FNO input (B, 1 + 2KF, T)."""
    emb = feature_embedding(features, cfg)
    T = stim.shape[-1]
    return torch.cat([stim[:, None, :], emb[:, :, None].expand(-1, -1, T)], dim=1)


def fi_phase(rate_Hz: torch.Tensor, dt_ms: float) -> torch.Tensor:
    """(B, T) instantaneous rate -> (B, 2, T) [sin, cos](2 pi phi), phi(t) = integral of the rate (spikes).

    The biologically-informed part of the embedding for step-like stimuli: the F-I features (rheobase,
    slope) say how many spikes the stimulus should have produced by time t; a neuron spikes once per turn
    of phi, so the FNO only has to shape a spike at the right phase instead of synthesising an oscillation
    whose frequency depends on its inputs (which a translation-equivariant operator does poorly)."""
    return phase_sin_cos(torch.cumsum(rate_Hz, dim=-1) * (dt_ms / 1000.0))


def phase_sin_cos(phi: torch.Tensor) -> torch.Tensor:
    """(B, T) phase in turns -> (B, 2, T) [sin, cos](2 pi phi)."""
    arg = 2.0 * math.pi * phi
    return torch.stack([torch.sin(arg), torch.cos(arg)], dim=1)


def fit_normalisers(population: np.ndarray) -> tuple[list[float], list[float]]:
    """[low, high] per feature over the training population (a degenerate column gets +-0.5 around it)."""
    pop = np.asarray(population, dtype=np.float64)
    lows, highs = pop.min(axis=0), pop.max(axis=0)
    flat = highs - lows <= 1e-12 * np.maximum(1.0, np.abs(highs))
    lows = np.where(flat, lows - 0.5, lows)
    highs = np.where(flat, highs + 0.5, highs)
    return [float(v) for v in lows], [float(v) for v in highs]
