"""Atomic file writing: every file lesionnet writes appears whole or not at all.

A file is first written to a hidden temporary file in the same folder (same suffix, so that
SimpleITK still recognises the format) and then renamed over the destination with
:func:`os.replace`, which is atomic on POSIX file systems. A killed process therefore leaves at most
a ``.tmp-*`` file behind, never a truncated output under the real name.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

TEMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it is renamed to ``destination``.

    The temporary name ends with the destination's full name so multi-part suffixes such as
    ``.nii.gz`` are kept. On an exception the temporary file is removed and nothing is renamed.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix="-" + destination.name, dir=destination.parent)
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_current_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp_path, destination)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as JSON atomically (keys kept in insertion order)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent)
            f.write("\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def load_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a missing or malformed file raises an error that names it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found.")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}). Fix or regenerate the file.") from e
