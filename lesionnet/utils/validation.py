"""Checks of values read from user files, shared by every reader (pairs, predictions, DLS files)."""
from __future__ import annotations

import math

import numpy as np


def finite_numbers(value, count: int, what: str, where: str, error: type[Exception] = ValueError,
                   positive: bool = False) -> tuple:
    """``value`` as a tuple of ``count`` finite floats, else ``error`` naming ``where`` and ``what``."""
    if not isinstance(value, (list, tuple, np.ndarray)) or len(value) != count:
        layout = " [x, y, z]" if count == 3 else ""
        raise error(f"{where}: '{what}' must be a list of {count} numbers{layout}, got {value!r}.")
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise error(f"{where}: '{what}' must hold numbers, got {value!r}.") from None
    if not all(math.isfinite(v) for v in out):
        raise error(f"{where}: '{what}' holds a non-finite value {value!r}.")
    if positive and not all(v > 0 for v in out):
        raise error(f"{where}: '{what}' must be positive, got {value!r}.")
    return out
