"""Recordings sampled far faster than an AP needs are low-pass filtered and decimated before a fit measures them.

At 200 kHz (the Allen Cell Types rate) 0.3 mV of white recording noise has a sample-to-sample dV/dt of ~85 mV/ms
(sd; p99 ~220), far above eFEL's 10 mV/ms AP-onset threshold: the fit read AP onsets of +25 mV and half-widths
of 0.2 ms off a noise-jittered synthetic cell whose APs start at -50 mV and are 0.8 ms wide, and freed the wrong
parameters on that evidence.
The field's practice (ipfx filters the voltage at 10 kHz before it takes dV/dt) is followed: a 4-pole Bessel
low-pass at `cutoff_Hz`, run forward and backward (zero phase: the AP peak stays where it was), then every k-th
sample for the smallest k that brings the rate to at most `max_rate_Hz`. A 10 kHz Bessel's rise time (~35 us) is a
tenth of the fastest AP's; the model is measured on its own noise-free 40 kHz grid as before.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy import signal

from ..io.recording import Recording

MAX_RATE_HZ = 50_000.0
CUTOFF_HZ = 10_000.0


def limit_sampling_rate(rec: Recording, max_rate_Hz: float = MAX_RATE_HZ, cutoff_Hz: float = CUTOFF_HZ
                        ) -> tuple[Recording, str | None]:
    """(the recording at <= max_rate_Hz, a note saying what was done) or (it unchanged, None). The command is
    subsampled (it is piecewise constant: an edge moves by less than one new sample); every sweep keeps its step
    window, start time and metadata."""
    rates = {round(s.sampling_rate_Hz, 6) for s in rec.sweeps}
    if not rec.sweeps or max(rates) <= max_rate_Hz:
        return rec, None
    out = []
    for s in rec.sweeps:
        rate = s.sampling_rate_Hz
        if rate <= max_rate_Hz:
            out.append(s)
            continue
        k = math.ceil(rate / max_rate_Hz - 1e-9)
        sos = signal.bessel(4, cutoff_Hz, btype="low", fs=rate, output="sos", norm="phase")
        v = signal.sosfiltfilt(sos, np.asarray(s.v_mV, dtype=np.float64))[::k]
        i = None if s.i_pA is None else np.asarray(s.i_pA)[::k]
        out.append(replace(s, v_mV=np.ascontiguousarray(v), i_pA=None if i is None else np.ascontiguousarray(i),
                           dt_ms=s.dt_ms * k, metadata={**s.metadata, "decimated_from_Hz": rate}))
    new = sorted({round(s.sampling_rate_Hz, 6) for s in out})
    note = (f"sampled at {', '.join(f'{r / 1e3:g}' for r in sorted(rates))} kHz: low-pass filtered at "
            f"{cutoff_Hz / 1e3:g} kHz (4-pole Bessel, zero phase) and decimated to "
            f"{', '.join(f'{r / 1e3:g}' for r in new)} kHz before the fit measures it (at the full rate the noise's "
            "dV/dt reaches eFEL's AP-onset threshold); the NWB output keeps the recording's own time base")
    return Recording(out, rec.source, rec.format, rec.cell, dict(rec.metadata)), note
