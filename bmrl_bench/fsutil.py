"""Write files and folders so that a reader never sees half of one: write beside, then rename.

Every temporary name is made on the target's own filesystem (in its folder, or in a
folder the caller names), so the final `os.replace` is one atomic rename.

- `atomic_file(path)`: a binary file object; `path` appears, complete, on a clean exit.
- `atomic_write_bytes` / `atomic_write_text`: the same for data in memory.
- `temp_dir(parent, prefix)`: an empty folder for staging a tree beside its target.
- `replace_dir(src, dst, trash)`: move a staged folder into place, the old one moved aside first.
- `atomic_dir(path)`: `temp_dir` + `replace_dir` as one `with` block.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_file(path: Path, *, fsync: bool = True, mode: int | None = None) -> Iterator[BinaryIO]:
    """A file object writing to a temporary file beside `path`, renamed to `path` when the block ends.

    `fsync`: flush to disk before the rename (survives a power cut); `mode`: permission bits
    (mkstemp makes 0600). On an exception `path` is untouched and the temporary file removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True, mode: int | None = None) -> None:
    with atomic_file(path, fsync=fsync, mode=mode) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str, *, fsync: bool = True, mode: int | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync, mode=mode)


def temp_dir(parent: Path, prefix: str = ".tmp-") -> Path:
    """A new, empty folder `parent/<prefix><random>` (on `parent`'s filesystem, so it can be renamed into place)."""
    path = Path(parent) / f"{prefix}{uuid.uuid4().hex}"
    path.mkdir(parents=True)  # not mkdtemp: its 0700 would stay on a folder moved into place
    return path


def replace_dir(src: Path, dst: Path, trash: Path | None = None) -> None:
    """Move folder `src` to `dst`. An existing `dst` is first renamed to `trash` (default: a hidden
    name beside it) and deleted only once `src` is in place, so `dst` is never half-written."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        trash = Path(trash) if trash is not None else dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex}")
        os.replace(dst, trash)
        os.replace(src, dst)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """An empty temporary folder beside `path`; on a clean exit it replaces `path`, else it is removed."""
    path = Path(path)
    tmp = temp_dir(path.parent, prefix=f".{path.name}.")
    try:
        yield tmp
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
