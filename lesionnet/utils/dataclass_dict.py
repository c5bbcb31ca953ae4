"""Building a dataclass from a plain dict (plans, checkpoints) with a clear error for unknown keys."""
from __future__ import annotations

from dataclasses import fields


def dataclass_from_dict(cls, d: dict, what: str | None = None):
    """``cls(**d)``, refusing keys that are not fields of ``cls`` (the error names them and the known ones)."""
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown {what or cls.__name__} keys {sorted(unknown)}; known: {sorted(known)}")
    return cls(**d)
