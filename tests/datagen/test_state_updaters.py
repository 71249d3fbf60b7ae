"""The disk-cached integration method: the same update code as Brian2's, read back from disk by a later call."""

from __future__ import annotations

from pathlib import Path

import brian2 as b2
import pytest
from brian2.stateupdaters.base import StateUpdateMethod

from noble.datagen.models.hh import HH
from noble.datagen.state_updaters import DiskCachedStateUpdater, cache_dir


def test_cached_code_is_brian2s_and_is_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOBLE_CACHE_DIR", str(tmp_path))
    eqs = b2.Equations(HH.equations(False, False, True, False, False))
    updater = DiskCachedStateUpdater("rk4")
    code = updater(eqs)
    assert code == StateUpdateMethod.stateupdaters["rk4"](eqs)
    files = list(cache_dir().glob("*.txt"))
    assert [f.name for f in files] == [f"{updater.key(eqs)}.txt"]
    # a later process reads the file instead of deriving: what is on disk is what it returns
    files[0].write_text(code + "\n# read from disk\n")
    assert DiskCachedStateUpdater("rk4")(eqs).endswith("# read from disk\n")
    # other equations (I_D off) are another entry, not the cached one
    no_d = b2.Equations(HH.equations(False, False, False, False, False))
    assert DiskCachedStateUpdater("rk4")(no_d) == StateUpdateMethod.stateupdaters["rk4"](no_d)
    assert len(list(cache_dir().glob("*.txt"))) == 2


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown Brian2 integration method 'rk5'"):
        DiskCachedStateUpdater("rk5")
    with pytest.raises(ValueError, match="not an explicit method"):
        DiskCachedStateUpdater("exponential_euler")
