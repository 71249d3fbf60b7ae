"""Exchange with the field: current-clamp recordings in (ABF, NWB, CSV, NPZ) and out (NWB, CSV, NPZ).

`read_recording(path)` picks the reader from the suffix (or `fmt`) and checks the file's magic bytes
agree, so a file that is not what it claims gives a `RecordingError` naming the file and the problem
instead of a parser's traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from .abf import is_abf, read_abf
from .csv import read_csv, write_csv
from .npz import ZIP_MAGIC, read_npz, write_npz
from .nwb import is_hdf5, is_long_square, read_nwb, write_nwb
from .recording import Recording, RecordingError, StepInfo, Sweep, detect_step, detect_steps, render_step

Format = Literal["abf", "nwb", "csv", "npz"]
SUFFIXES: dict[str, Format] = {".abf": "abf", ".nwb": "nwb", ".h5": "nwb", ".hdf5": "nwb", ".csv": "csv",
                               ".txt": "csv", ".npz": "npz"}

__all__ = [
    "Recording", "RecordingError", "StepInfo", "Sweep", "detect_step", "detect_steps", "render_step",
    "read_recording", "sniff_format", "read_abf", "read_nwb", "read_csv", "read_npz",
    "write_nwb", "write_csv", "write_npz", "is_long_square",
]


def sniff_format(head: bytes) -> Format | None:
    """Format from a file's first bytes: ABF/HDF5/ZIP signatures, else text that looks like CSV."""
    if is_abf(head):
        return "abf"
    if is_hdf5(head):
        return "nwb"
    if head[:4] == ZIP_MAGIC:
        return "npz"
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = head[:-3].decode("utf-8")  # a multi-byte character cut at the end of the head
        except UnicodeDecodeError:
            return None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return "csv" if lines and "," in lines[0] else None


def read_recording(path: str | os.PathLike[str], fmt: Format | None = None) -> Recording:
    """Read a current-clamp step recording, dispatching on `fmt`, else the suffix, else the content."""
    p = Path(path)
    if not p.exists():
        raise RecordingError(f"{p}: no such file")
    if not p.is_file():
        raise RecordingError(f"{p}: not a regular file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise RecordingError(f"{p}: cannot open ({exc})") from exc
    if not head:
        raise RecordingError(f"{p}: file is empty")
    content = sniff_format(head)
    claimed: Format | None = fmt or SUFFIXES.get(p.suffix.lower())
    if fmt is not None and fmt not in ("abf", "nwb", "csv", "npz"):
        raise RecordingError(f"{p}: unknown format {fmt!r} (use abf, nwb, csv or npz)")
    if claimed is None:
        if content is None:
            raise RecordingError(f"{p}: unknown format: suffix {p.suffix!r} and content match none of "
                                 "ABF, NWB, CSV, NPZ")
        claimed = content
    elif content != claimed:
        looks = f"looks like {content.upper()}" if content else "matches no known format"
        raise RecordingError(f"{p}: not a valid {claimed.upper()} file (its content {looks}); "
                             "fix the name or pass fmt=")
    readers = {"abf": read_abf, "nwb": read_nwb, "csv": read_csv, "npz": read_npz}
    try:
        return readers[claimed](p)
    except RecordingError:
        raise
    except Exception as exc:  # never let a parser's exception escape as something else
        raise RecordingError(f"{p}: failed to read as {claimed.upper()} ({type(exc).__name__}: {exc})") from exc
