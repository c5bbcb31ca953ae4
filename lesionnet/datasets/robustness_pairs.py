"""The robustness protocol of the DLT paper (Sec. 5, "Robustness evaluation"): every directed pair is tracked
from its original template center and from ``9`` centers shifted uniformly within the ball
``|Δμ_t| ≤ 0.25 r_t`` (mm), to see how much a tracker depends on an exact human click.

The shifted copies are ordinary pairs whose id is ``<pair_id>#shift<k>`` (k = 1..9), so every tracker and the
prediction files handle them unchanged; :func:`base_pair_id` maps a copy back to its pair. A copy's shift
is drawn from a generator seeded by the run seed and the pair id, so it does not depend on the order or the
number of pairs. Centers are ``(z, y, x)`` voxels of the source scan; spacings ``(z, y, x)`` mm; radii mm.
"""
from __future__ import annotations

import zlib
from dataclasses import replace
from typing import Callable

import numpy as np

from lesionnet.datasets.raw_format import TrackingPair

SHIFT_SEPARATOR = "#shift"
NUM_SHIFTS = 9
SHIFT_FRACTION = 0.25


def random_shift_in_ball_zyx(radius_mm: float, spacing_zyx, rng: np.random.Generator) -> np.ndarray:
    """A shift (voxels, z, y, x) drawn uniformly in the ball of ``radius_mm`` mm (direction uniform, length
    ``R u^(1/3)``)."""
    direction = rng.normal(size=3)
    direction /= max(float(np.linalg.norm(direction)), 1e-12)
    length_mm = float(radius_mm) * float(rng.uniform()) ** (1.0 / 3.0)
    return direction * length_mm / np.asarray(spacing_zyx, dtype=np.float64)


def base_pair_id(pair_id: str) -> str:
    """The pair a (possibly shifted) pair id belongs to."""
    return str(pair_id).split(SHIFT_SEPARATOR, 1)[0]


def is_shifted(pair_id: str) -> bool:
    return SHIFT_SEPARATOR in str(pair_id)


def with_shifted_templates(pairs: list[TrackingPair], source_spacing_zyx: Callable[[str], tuple],
                           num_shifts: int = NUM_SHIFTS, fraction: float = SHIFT_FRACTION,
                           seed: int = 0) -> list[TrackingPair]:
    """``pairs`` followed, per pair, by ``num_shifts`` copies whose source center is moved within
    ``fraction × source_radius_mm`` (``source_spacing_zyx(scan_id)`` gives the source scan's spacing)."""
    out = list(pairs)
    for pair in pairs:
        if is_shifted(pair.pair_id):
            raise ValueError(f"pair id {pair.pair_id!r} contains {SHIFT_SEPARATOR!r}, reserved for shifted copies.")
        rng = np.random.default_rng([int(seed), zlib.crc32(pair.pair_id.encode("utf-8"))])
        spacing = source_spacing_zyx(pair.source)
        for k in range(1, int(num_shifts) + 1):
            shift = random_shift_in_ball_zyx(fraction * float(pair.source_radius_mm), spacing, rng)
            center = tuple(float(c) for c in np.asarray(pair.source_center_zyx, dtype=np.float64) + shift)
            out.append(replace(pair, pair_id=f"{pair.pair_id}{SHIFT_SEPARATOR}{k}", source_center_zyx=center))
    return out


__all__ = ["SHIFT_SEPARATOR", "NUM_SHIFTS", "SHIFT_FRACTION", "random_shift_in_ball_zyx", "base_pair_id", "is_shifted",
           "with_shifted_templates"]
