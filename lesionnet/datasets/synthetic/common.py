"""Helpers shared by the synthetic dataset generators: seeding, splits, grids, noise, output folders."""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from itertools import combinations
from math import comb
from pathlib import Path
from typing import Iterator

import numpy as np
from scipy import ndimage

from lesionnet.datasets.geometry import Geometry, zyx_to_xyz
from lesionnet.datasets.raw_format import DATASET_FOLDER_PATTERN, TrackingPair

logger = logging.getLogger(__name__)

LICENCE = "synthetic, CC0"


# ---------------------------------------------------------------------------------------- seeding
def patient_seed_sequence(seed: int, patient_index: int) -> np.random.SeedSequence:
    """The seed sequence of patient ``patient_index`` of a run seeded with ``seed``.

    Equal to ``np.random.SeedSequence(seed).spawn(n)[patient_index]`` for any ``n``: a patient's data
    depend only on the run seed and its index, not on the number of patients or worker processes.
    """
    return np.random.SeedSequence(int(seed), spawn_key=(int(patient_index),))


def child_rng(parent: np.random.SeedSequence, stream: int) -> np.random.Generator:
    """An independent generator for one purpose (``stream``) of a patient; pure, unlike ``spawn``."""
    return np.random.default_rng(np.random.SeedSequence(parent.entropy, spawn_key=tuple(parent.spawn_key) + (stream,)))


def as_seed_sequence(seed) -> np.random.SeedSequence:
    """Accept an int or a ``SeedSequence``."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    return np.random.SeedSequence(int(seed))


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A draw uniform in ``log`` between ``low`` and ``high`` (favours small values)."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def num_test_cases(num_cases: int, test_fraction: float) -> int:
    """Cases held out for testing: ``round(num_cases * test_fraction)``, at least 1 when there are 2+."""
    if num_cases < 2:
        return 0
    return int(min(num_cases - 1, max(1, round(num_cases * test_fraction))))


# ---------------------------------------------------------------------------------------- grids
def centered_geometry(shape_zyx, spacing_zyx) -> Geometry:
    """Axis-aligned geometry whose grid is centered on the world origin (mm)."""
    shape_xyz = np.asarray(zyx_to_xyz(shape_zyx), dtype=np.float64)
    spacing_xyz = np.asarray(zyx_to_xyz(spacing_zyx), dtype=np.float64)
    origin_xyz = -(shape_xyz - 1.0) / 2.0 * spacing_xyz
    return Geometry(tuple(spacing_xyz), tuple(origin_xyz), shape_zyx=tuple(int(v) for v in shape_zyx))


def distance_to_border_mm(geometry: Geometry, index_zyx) -> float:
    """Smallest distance (mm) from a continuous voxel index (z, y, x) to the outer voxel centers of the grid."""
    index_zyx = np.asarray(index_zyx, dtype=np.float64)
    upper = np.asarray(geometry.shape_zyx, dtype=np.float64) - 1.0
    spacing_zyx = np.asarray(geometry.spacing_zyx)
    return float(np.min(np.minimum(index_zyx, upper - index_zyx) * spacing_zyx))


def smooth_bias_field(shape_zyx, coefficients_zyx: np.ndarray) -> np.ndarray:
    """A smooth field over a grid of ``shape_zyx``: tensor-product Bernstein polynomials whose
    control values are ``coefficients_zyx`` (a small array, e.g. 3×3×3, in the output's units).

    The field is a convex combination of the control values, so ``|field| <= max |coefficients|``.
    """
    coefficients_zyx = np.asarray(coefficients_zyx, dtype=np.float64)
    bases = []
    for n, degree_plus_one in zip(shape_zyx, coefficients_zyx.shape):
        degree = degree_plus_one - 1
        u = np.linspace(0.0, 1.0, n)
        bases.append(np.stack([comb(degree, i) * u ** i * (1 - u) ** (degree - i) for i in range(degree + 1)], axis=1))
    return np.einsum("ai,bj,ck,ijk->abc", *bases, coefficients_zyx, optimize=True).astype(np.float32)


def correlated_noise(rng: np.random.Generator, shape_zyx, sigma_hu: float,
                     correlation_voxels: float = 0.6) -> np.ndarray:
    """Gaussian noise with standard deviation ``sigma_hu``, slightly correlated in-plane like CT noise."""
    noise = rng.standard_normal(size=tuple(shape_zyx), dtype=np.float32)
    if correlation_voxels > 0:
        noise = ndimage.gaussian_filter(noise, (0.0, correlation_voxels, correlation_voxels))
        noise /= max(float(noise.std()), 1e-6)
    return noise * np.float32(sigma_hu)


def to_int16_hu(image_zyx: np.ndarray) -> np.ndarray:
    """Round HU to int16, clipped to the CT range [-1024, 3071]."""
    return np.clip(np.round(image_zyx), -1024, 3071).astype(np.int16)


# ---------------------------------------------------------------------------------------- output
class DatasetExistsError(FileExistsError):
    """The dataset folder exists already and ``overwrite`` was not requested."""


def check_no_conflicting_dataset(output_folder: Path) -> None:
    """Refuse when another folder with the same dataset id exists beside ``output_folder``.

    Two folders ``Dataset501_*`` would make ``-d 501`` ambiguous; the user has to remove or rename one.
    """
    match = DATASET_FOLDER_PATTERN.match(output_folder.name)
    if not match or not output_folder.parent.is_dir():
        return
    prefix = f"Dataset{match.group(1)}_"
    others = sorted(p.name for p in output_folder.parent.iterdir()
                    if p.is_dir() and p.name.startswith(prefix) and p.name != output_folder.name)
    if others:
        raise DatasetExistsError(f"{output_folder.parent} already holds {', '.join(others)} with the dataset id "
                                 f"{match.group(1)}; writing {output_folder.name} would make the id ambiguous. "
                                 "Remove or rename that folder first.")


def remove_interrupted_staging(output_folder: Path) -> None:
    """Clean up after a killed :func:`staged_output_folder`: put back a dataset whose replacement was killed
    between its two renames (``.old-<name>-*/<name>`` while ``<name>`` is missing), then remove every
    leftover staging (``.tmp-<name>-*``) and old (``.old-<name>-*``) folder beside ``output_folder``."""
    if not output_folder.parent.is_dir():
        return
    leftovers = sorted(p for p in output_folder.parent.iterdir() if p.is_dir() and (
        p.name.startswith(f".tmp-{output_folder.name}-") or p.name.startswith(f".old-{output_folder.name}-")))
    for old in leftovers:
        if old.name.startswith(".old-") and (old / output_folder.name).is_dir() and not output_folder.exists():
            os.replace(old / output_folder.name, output_folder)
            logger.warning("Put back %s, which an interrupted --overwrite run was replacing.", output_folder)
    for leftover in leftovers:
        shutil.rmtree(leftover, ignore_errors=True)
        logger.info("Removed %s, left by an interrupted run.", leftover)


@contextlib.contextmanager
def staged_output_folder(output_folder: str | os.PathLike, overwrite: bool) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``output_folder``; on success it replaces ``output_folder``.

    An existing ``output_folder`` is an error unless ``overwrite`` (then it is replaced only after the
    new dataset is complete). On failure the temporary folder is removed and nothing else changes; the
    staging folder of a killed run is removed by the next run (:func:`remove_interrupted_staging`).
    """
    output_folder = Path(output_folder)
    remove_interrupted_staging(output_folder)
    if output_folder.exists() and not overwrite:
        raise DatasetExistsError(f"{output_folder} already exists. Pass --overwrite (overwrite=True) to replace it, "
                                 "or remove it first.")
    check_no_conflicting_dataset(output_folder)
    output_folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{output_folder.name}-", dir=output_folder.parent))
    try:
        yield staging
        if output_folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".old-{output_folder.name}-", dir=output_folder.parent))
            os.replace(output_folder, old / output_folder.name)
            os.replace(staging, output_folder)
            shutil.rmtree(old, ignore_errors=True)
            logger.info("Replaced the existing dataset %s", output_folder)
        else:
            os.replace(staging, output_folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------------- longitudinal patients
def sample_subslices(geometry: Geometry, mapping, evaluate, offsets, chunk_points: int = 250_000) -> np.ndarray:
    """Average ``evaluate(x, y, z)`` (canonical coordinates, 1D float32 arrays in mm → values per point) over
    the sub-slice ``offsets`` (fractions of a slice) of every voxel of ``geometry`` → float32 ``[z, y, x]``.

    ``mapping.voxel_grid_to_canonical(geometry, index_z, index_y, index_x)`` gives the canonical coordinates
    of broadcast voxel indices; slabs of slices are evaluated at a time (about ``chunk_points`` points).
    """
    nz, ny, nx = geometry.shape_zyx
    out = np.zeros((nz, ny, nx), dtype=np.float32)
    index_y = np.arange(ny, dtype=np.float32)[None, :, None]
    index_x = np.arange(nx, dtype=np.float32)[None, None, :]
    slices_per_chunk = max(1, chunk_points // (ny * nx))
    for z0 in range(0, nz, slices_per_chunk):
        z_indices = np.arange(z0, min(nz, z0 + slices_per_chunk))
        for offset in offsets:
            index_z = (z_indices + offset).astype(np.float32)[:, None, None]
            cx, cy, cz = mapping.voxel_grid_to_canonical(geometry, index_z, index_y, index_x)
            values = evaluate(cx.ravel(), cy.ravel(), cz.ravel())
            out[z_indices] += values.reshape(z_indices.size, ny, nx) / np.float32(len(offsets))
    return out


def directed_lesion_pairs(patient, k: int, timepoints) -> list:
    """Both directions of every pair of ``timepoints`` (scans that show lesion ``k``) as ``TrackingPair``s.

    ``patient`` offers ``patient_id``, ``scan_id(t)``, ``lesion_center_zyx(t, k)`` and ``lesion_radius_mm(t, k)``.
    """
    centers_zyx = {t: patient.lesion_center_zyx(t, k) for t in timepoints}
    pairs = []
    for a, b in combinations(timepoints, 2):
        for s, g in ((a, b), (b, a)):
            pairs.append(TrackingPair(
                pair_id=f"{patient.patient_id}_L{k:02d}_T{s}-T{g}",
                source=patient.scan_id(s), target=patient.scan_id(g),
                source_center_zyx=tuple(float(v) for v in centers_zyx[s]),
                source_radius_mm=patient.lesion_radius_mm(s, k),
                target_center_zyx=tuple(float(v) for v in centers_zyx[g]),
                target_radius_mm=patient.lesion_radius_mm(g, k),
                patient=patient.patient_id))
    return pairs
