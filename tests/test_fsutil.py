"""Atomic writes: a reader sees the old content or the new, never half of either."""
from __future__ import annotations

from pathlib import Path

import pytest

from bmrl_bench.fsutil import atomic_dir, atomic_file, atomic_write_text, replace_dir, temp_dir


def test_atomic_file_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.bin"
    with pytest.raises(RuntimeError), atomic_file(target) as f:
        f.write(b"half")
        raise RuntimeError("interrupted")
    assert not target.exists() and list(target.parent.iterdir()) == []  # no temporary file left
    with atomic_file(target, fsync=False, mode=0o644) as f:
        f.write(b"whole")
    assert target.read_bytes() == b"whole" and target.stat().st_mode & 0o777 == 0o644
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and sorted(p.name for p in target.parent.iterdir()) == ["a.bin"]


def test_replace_dir_swaps_folders(tmp_path: Path) -> None:
    old, new = tmp_path / "ds", temp_dir(tmp_path, prefix="123-")
    assert new.name.startswith("123-") and new.parent == tmp_path
    old.mkdir()
    (old / "x").write_text("old")
    (new / "x").write_text("new")
    replace_dir(new, old, trash=tmp_path / "trash")
    assert (old / "x").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # the source moved, the old copy deleted


def test_atomic_dir_keeps_the_old_folder_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "expert"
    with atomic_dir(target) as d:
        (d / "w").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(target) as d:
        (d / "w").write_text("2")
        raise RuntimeError("interrupted")
    assert (target / "w").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["expert"]
