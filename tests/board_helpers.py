"""Small helpers shared by the leaderboard tests."""
from __future__ import annotations

import hashlib
from pathlib import Path


def tree_digest(root: Path) -> str:
    """Every path (files and folders) under root and every file's bytes: equal digests, untouched board."""
    h = hashlib.sha256()
    if not root.exists():
        return "absent"
    for p in sorted(root.rglob("*")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        if p.is_file():
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def sha(tag: str) -> str:
    """A stand-in dataset checksum, distinct per tag."""
    return hashlib.sha256(tag.encode()).hexdigest()


def task_dataset_id(suite: str, version: int, i: int) -> str:
    return f"bmrl/{suite}/task-{i:02d}-v{version}"
