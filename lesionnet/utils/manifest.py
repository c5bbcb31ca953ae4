"""Change detection for planning and preprocessing: file signatures, stable hashes, write-if-changed.

Every output of ``lesionnet_plan_and_preprocess`` records what it was made from: the signature
(size in bytes and modification time in nanoseconds) of each input file and a hash of the part of the
plan that shaped it. A re-run compares those records with the current inputs and redoes only what
changed; outputs whose content would be identical are not rewritten, so their mtimes stay put.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from lesionnet.utils.files import load_json, write_json


def file_signature(path: str | os.PathLike) -> dict:
    """``{"size": bytes, "mtime_ns": int}`` of a file; a missing file raises ``FileNotFoundError`` naming it."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found.") from None
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hex SHA-256 (first ``length`` characters) of ``obj`` as canonical JSON (sorted keys)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json_or_none(path: str | os.PathLike) -> Any:
    """The JSON content of ``path``, or None when it is missing or unreadable (then it is simply redone)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return load_json(path)
    except (ValueError, OSError):
        return None


def write_json_if_changed(path: str | os.PathLike, obj: Any) -> bool:
    """Write ``obj`` atomically unless ``path`` already holds exactly that JSON; True when written."""
    path = Path(path)
    normalised = json.loads(json.dumps(obj, default=_json_default))
    existing = read_json_or_none(path)
    # compare as canonical text, so that NaN (which is unequal to itself) does not force a rewrite
    if existing is not None and json.dumps(existing, sort_keys=True) == json.dumps(normalised, sort_keys=True):
        return False
    write_json(path, normalised)
    return True


__all__ = ["file_signature", "stable_hash", "read_json_or_none", "write_json_if_changed"]
