"""Checks of output folders made before any work starts, so that a long run never fails at its first write.

:func:`check_output_folder` accepts a folder that exists and is writable, or one that does not exist
yet but can be created (its nearest existing ancestor is a writable folder). Anything else raises
:class:`OutputPathError`, whose message names the path, the problem and the fix.
"""
from __future__ import annotations

import os
from pathlib import Path


class OutputPathError(ValueError):
    """An output path that cannot be used: an existing file, or a folder that cannot be created or written."""


def check_output_folder(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Return ``folder`` as a :class:`Path` after checking it can hold the outputs (nothing is created).

    Raises:
        OutputPathError: ``folder`` (or one of its parents) is an existing file, or the folder (or the
            nearest existing parent it would be created in) is not writable.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"{folder}: the {what} is an existing file, not a folder. Name a folder instead "
                              "(a new one is created), or move the file away.")
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise OutputPathError(f"{folder}: cannot create the {what}: {existing} is a file, not a folder. "
                              "Choose another path.")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == folder else f" (it would be created in {existing})"
        raise OutputPathError(f"{folder}: the {what} is not writable{where}. Choose a folder you can write to, "
                              "or fix its permissions.")
    return folder


__all__ = ["OutputPathError", "check_output_folder"]
