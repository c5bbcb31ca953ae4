"""Dataset fingerprint: the figures of a raw dataset that the planner's rules read.

``extract_fingerprint(501)`` reads every training scan once in a process pool and writes
``$lesionnet_preprocessed/DatasetXXX_Name/dataset_fingerprint.json`` with

* per scan: spacing, shape, body-region intensity statistics, number of lesions;
* spacing / shape / slice-thickness distributions;
* CT intensities inside the body mask (HU > ``body_threshold_hu``, holes filled per slice, largest
  connected component; computed on every second voxel in-plane), subsampled to at most
  ``samples_per_scan`` voxels per scan: percentiles 0.5 / 50 / 99.5, mean, std over all scans' samples;
* lesion radii (mm): tracking — the radii of the unique lesions of the pairs (source and target
  sides; a lesion = scan + center); detection — the equivalent-sphere radius of each instance of the
  masks, with its extents (mm, voxels, slices);
* lesions per scan;
* tracking: the error of each candidate registration prior (:data:`PRIOR_KINDS`: affine, deformable) on
  the training pairs, per axis, ``|T(source_center) − target_center| × target spacing`` (mm), with
  CPM@10mm, MED and the median seconds per scan pair, measured on a seeded random sample of at most
  ``max_registrations`` scan pairs (default :data:`MAX_PRIOR_ERROR_SCAN_PAIRS`) with the priors' own
  recipes (single-threaded, in the pool) and cached in ``registrations/planning/``. The planner's
  ``rule_registration_prior`` picks the prior that TLT and DLT start from from these figures;
* detection: per-slice instance counts and lesion extents in slices.

A re-run whose inputs (file sizes and mtimes, settings) are unchanged returns the stored fingerprint
without reading any scan or writing anything.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from lesionnet.datasets.dataset_id import resolve_raw_dataset
from lesionnet.datasets.image_io import read_geometry, read_image
from lesionnet.datasets.instances import instance_statistics
from lesionnet.datasets.raw_format import RawDataset
from lesionnet.datasets.verification.pairs import require_usable_training_pairs
from lesionnet.paths import preprocessed_folder_for
from lesionnet.registration.affine import RegistrationSettings
from lesionnet.registration.cache import (
    DEFAULT_PRIOR_REGISTRATION,
    ensure_registrations,
    prior_error_mm_zyx,
    registration_jobs,
    settings_key,
    settings_without_threads,
)
from lesionnet.registration.deformable import DeformableSettings
from lesionnet.utils.manifest import (
    file_signature,
    read_json_or_none,
    stable_hash,
    write_json_if_changed,
)
from lesionnet.utils.parallel import default_num_processes, run_jobs

logger = logging.getLogger(__name__)

FINGERPRINT_FILE = "dataset_fingerprint.json"
FINGERPRINT_VERSION = 3
BODY_THRESHOLD_HU = -500.0
SAMPLES_PER_SCAN = 10_000
QUANTILES = (0.5, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.5)
#: affine settings of the prior-error estimate (the affine prior's own recipe, single thread); the
#: deformable estimate runs its B-spline stage after this affine (:func:`candidate_settings`)
PRIOR_ERROR_REGISTRATION = RegistrationSettings(threads=1)
#: the deformable candidate's B-spline settings (its affine stage is the affine candidate's)
DEFORMABLE_PRIOR = DeformableSettings(threads=1)
#: the registration priors whose error the fingerprint measures
PRIOR_KINDS = ("affine", "deformable")
#: a prior "finds" a lesion when it lands within min(radius, this) of it (the CPM@10mm convention)
CPM_CAP_MM = 10.0
#: scan pairs registered for the prior-error estimate (a seeded random sample when there are more)
MAX_PRIOR_ERROR_SCAN_PAIRS = 12
PLANNING_CACHE = "planning"
#: the body mask and the intensity samples use every 2nd voxel in-plane (4x less work, same statistics)
IN_PLANE_STEP = 2


def quantile_summary(values, quantiles=QUANTILES) -> dict:
    """``{"count", "min", "max", "mean", "std", "p0.5": ..., ...}`` of a 1D sequence (empty: count 0)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return {"count": 0}
    out = {"count": int(v.size), "min": float(v.min()), "max": float(v.max()), "mean": float(v.mean()),
           "std": float(v.std())}
    for q in quantiles:
        out[f"p{q:g}"] = float(np.percentile(v, q))
    return out


def body_mask(image_hu_zyx: np.ndarray, threshold_hu: float = BODY_THRESHOLD_HU) -> np.ndarray:
    """Body region of a CT: ``HU > threshold``, holes filled slice by slice (lungs, airways), largest
    3D connected component (drops the table and air noise). Falls back to the threshold mask when
    nothing is above the threshold."""
    mask = image_hu_zyx > threshold_hu
    if not mask.any():
        return np.ones_like(mask)
    filled = np.empty_like(mask)
    for z in range(mask.shape[0]):
        filled[z] = ndimage.binary_fill_holes(mask[z])
    labels, n = ndimage.label(filled)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        filled = labels == int(np.argmax(sizes))
    return filled


def _sample_values(values: np.ndarray, max_samples: int, rng: np.random.Generator) -> np.ndarray:
    if values.size <= max_samples:
        return values.astype(np.float32)
    return values[rng.choice(values.size, size=max_samples, replace=False)].astype(np.float32)


def _scan_worker(job: tuple) -> dict:
    """Worker: figures of one scan (and its mask). Returns a dict with the intensity samples."""
    scan_id, image_path, label_path, seed, samples_per_scan, threshold = job
    image, geometry = read_image(image_path)
    grid = image[:, ::IN_PLANE_STEP, ::IN_PLANE_STEP]      # the statistics are sampled anyway: a 2x coarser grid
    mask = body_mask(grid, threshold)
    body_values = grid[mask]
    rng = np.random.default_rng(seed)
    samples = _sample_values(body_values, samples_per_scan, rng)
    scan = {
        "spacing_zyx": list(geometry.spacing_zyx),
        "shape_zyx": list(geometry.shape_zyx),
        "body_fraction": float(mask.mean()),
        "intensity": _intensity_stats(samples),
    }
    result = {"scan_id": scan_id, "scan": scan, "samples": samples}
    if label_path is not None:
        labels, label_geometry = read_image(label_path, dtype=None)
        if not label_geometry.same_grid(geometry):
            raise ValueError(f"{label_path}: mask grid (shape {label_geometry.shape_zyx}, spacing "
                             f"{label_geometry.spacing_xyz}) differs from its image (shape {geometry.shape_zyx}, "
                             f"spacing {geometry.spacing_xyz}); run lesionnet_verify_dataset and resample the mask "
                             "onto the image grid.")
        stats = instance_statistics(np.rint(labels).astype(np.int64), geometry.spacing_zyx)
        scan["num_lesions"] = len(stats["instances"])
        result["instances"] = stats["instances"]
        result["per_slice_counts"] = stats["per_slice_counts"]
    return result


def _intensity_stats(samples: np.ndarray) -> dict:
    if samples.size == 0:
        return {"num_samples": 0}
    s = samples.astype(np.float64)
    return {"num_samples": int(s.size), "p0.5": float(np.percentile(s, 0.5)), "p50": float(np.percentile(s, 50)),
            "p99.5": float(np.percentile(s, 99.5)), "mean": float(s.mean()), "std": float(s.std())}


def fingerprint_inputs(raw: RawDataset, settings: RegistrationSettings, samples_per_scan: int,
                       seed: int, symmetric: bool, prior_settings: RegistrationSettings | None = None,
                       max_registrations: int = MAX_PRIOR_ERROR_SCAN_PAIRS) -> dict:
    """What the fingerprint depends on (file signatures and settings); its hash decides re-runs."""
    scans = raw.scan_ids("Tr")
    inputs = {
        "fingerprint_version": FINGERPRINT_VERSION,
        "dataset_json": file_signature(raw.dataset_json_path),
        "images": {s: file_signature(raw.image_path(s)) for s in scans},
        "samples_per_scan": int(samples_per_scan),
        "seed": int(seed),
        "body_threshold_hu": BODY_THRESHOLD_HU,
    }
    if raw.task == "tracking":
        inputs["pairs"] = file_signature(raw.pairs_path("Tr"))
        inputs["registration_settings_key"] = settings_key(settings)
        inputs["registration_symmetric"] = bool(symmetric)
        inputs["prior_registration_settings_key"] = settings_key(prior_settings or DEFAULT_PRIOR_REGISTRATION)
        inputs["prior_kinds"] = list(PRIOR_KINDS)
        inputs["max_registrations"] = int(max_registrations)
    else:
        inputs["labels"] = {s: file_signature(raw.label_path(s)) for s in scans}
    return inputs


def extract_fingerprint(dataset, num_processes: int | None = None,
                        registration_settings: RegistrationSettings | None = None,
                        samples_per_scan: int = SAMPLES_PER_SCAN, seed: int = 0, symmetric_registration: bool = True,
                        output_folder: str | os.PathLike | None = None, force: bool = False,
                        progress: bool = True, max_registrations: int = MAX_PRIOR_ERROR_SCAN_PAIRS,
                        prior_registration_settings: RegistrationSettings | None = None) -> dict:
    """Compute (or reuse) the fingerprint of a raw dataset and write ``dataset_fingerprint.json``.

    Args:
        dataset: dataset id (``501``), folder name, folder path or :class:`RawDataset`.
        num_processes: worker processes (default: usable CPU cores).
        registration_settings: affine settings of the prior-error estimates (tracking; default
            :data:`PRIOR_ERROR_REGISTRATION`); the deformable estimate starts with the same affine.
        samples_per_scan: body voxels sampled per scan for the intensity statistics.
        seed: seed of the voxel subsampling.
        symmetric_registration: register each unordered scan pair once (see :mod:`lesionnet.registration.cache`).
        output_folder: preprocessed dataset folder (default ``$lesionnet_preprocessed/<name>``).
        force: recompute even when the inputs are unchanged (cached registrations are still reused).
        progress: tqdm progress bars.
        max_registrations: scan pairs registered for the prior-error estimate (a seeded sample).
        prior_registration_settings: the affine settings that preprocessing will use for the training
            priors (also the affine stage of a deformable prior), recorded per candidate for the planner
            (default :data:`DEFAULT_PRIOR_REGISTRATION`).

    Returns:
        The fingerprint dict (also written to ``output_folder/dataset_fingerprint.json``).
    """
    raw = resolve_raw_dataset(dataset)
    settings = registration_settings or PRIOR_ERROR_REGISTRATION
    prior_settings = prior_registration_settings or DEFAULT_PRIOR_REGISTRATION
    if int(max_registrations) < 1:
        raise ValueError(f"max_registrations must be >= 1, got {max_registrations}")
    num_processes = num_processes or default_num_processes()
    out_folder = Path(output_folder) if output_folder is not None else preprocessed_folder_for(raw.folder)
    path = out_folder / FINGERPRINT_FILE
    scans = raw.scan_ids("Tr")
    if not scans:
        raise ValueError(f"{raw.images_dir('Tr')}: no training scans ({{scan_id}}_0000{raw.file_ending}) found. "
                         "Check the dataset with lesionnet_verify_dataset.")
    inputs = fingerprint_inputs(raw, settings, samples_per_scan, seed, symmetric_registration, prior_settings,
                                max_registrations)
    signature = stable_hash(inputs)
    existing = read_json_or_none(path)
    if not force and isinstance(existing, dict) and existing.get("inputs_signature") == signature:
        logger.info("Fingerprint of %s is up to date (%s)", raw.name, path)
        return existing

    start = time.perf_counter()
    pairs = raw.pairs("Tr") if raw.task == "tracking" else []
    require_usable_training_pairs(raw.pairs_path("Tr"), pairs, scans, raw.name)
    jobs = []
    for index, scan_id in enumerate(scans):
        label_path = str(raw.label_path(scan_id)) if raw.task == "detection" else None
        jobs.append((scan_id, str(raw.image_path(scan_id)), label_path, [int(seed), index], int(samples_per_scan),
                     BODY_THRESHOLD_HU))
    results = run_jobs(_scan_worker, jobs, num_processes, progress, f"fingerprint {raw.name}", unit="scan")
    results.sort(key=lambda r: r["scan_id"])

    fingerprint = _aggregate_scans(raw, results)
    if raw.task == "tracking":
        fingerprint["tracking"] = _tracking_figures(raw, pairs, fingerprint, out_folder, settings, prior_settings,
                                                    num_processes, symmetric_registration, progress,
                                                    int(max_registrations), int(seed))
    else:
        fingerprint["detection"] = _detection_figures(results, fingerprint)
    fingerprint["inputs_signature"] = signature
    out_folder.mkdir(parents=True, exist_ok=True)
    write_json_if_changed(path, fingerprint)
    logger.info("Fingerprint of %s: %d scans in %.1f s -> %s", raw.name, len(scans), time.perf_counter() - start, path)
    return fingerprint


def _aggregate_scans(raw: RawDataset, results: list) -> dict:
    spacings = np.array([r["scan"]["spacing_zyx"] for r in results], dtype=np.float64)
    shapes = np.array([r["scan"]["shape_zyx"] for r in results], dtype=np.float64)
    samples = np.concatenate([r["samples"] for r in results]) if results else np.zeros(0, np.float32)
    raw_bytes = sum(file_signature(raw.image_path(r["scan_id"]))["size"] for r in results)
    if raw.task == "detection":
        raw_bytes += sum(file_signature(raw.label_path(r["scan_id"]))["size"] for r in results)
    thickness = spacings[:, 0]
    return {
        "fingerprint_version": FINGERPRINT_VERSION,
        "dataset": raw.name,
        "task": raw.task,
        "num_scans": len(results),
        "raw_size_bytes": int(raw_bytes),
        "scans": {r["scan_id"]: r["scan"] for r in results},
        "spacing_zyx": {
            "median": np.median(spacings, axis=0).tolist(),
            "p10": np.percentile(spacings, 10, axis=0).tolist(),
            "p90": np.percentile(spacings, 90, axis=0).tolist(),
            "min": spacings.min(axis=0).tolist(),
            "max": spacings.max(axis=0).tolist(),
            "all": spacings.tolist(),
        },
        "shape_zyx": {
            "median": np.median(shapes, axis=0).tolist(),
            "min": shapes.min(axis=0).tolist(),
            "max": shapes.max(axis=0).tolist(),
        },
        "extent_mm_zyx": {"median": np.median(shapes * spacings, axis=0).tolist()},
        "slice_thickness_mm": dict(quantile_summary(thickness), histogram=_histogram(thickness, 0.5)),
        "intensity": dict(_intensity_stats(samples), body_threshold_hu=BODY_THRESHOLD_HU,
                          samples_per_scan=int(max((r["samples"].size for r in results), default=0))),
    }


def _histogram(values, bin_width: float) -> dict:
    """``{"bin_width", "counts": {"left edge": count}}`` of a 1D array."""
    v = np.asarray(values, dtype=np.float64)
    edges = np.floor(v / bin_width) * bin_width
    keys, counts = np.unique(np.round(edges, 6), return_counts=True)
    return {"bin_width": bin_width, "counts": {f"{k:g}": int(c) for k, c in zip(keys, counts)}}


def unique_lesions(pairs) -> dict:
    """``{scan_id: [(center_zyx, radius_mm), ...]}``: the distinct lesions the pairs name (source and
    target sides; centers equal to 1e-3 voxel are one lesion)."""
    lesions: dict = {}
    for p in pairs:
        sides = [(p.source, p.source_center_zyx, p.source_radius_mm)]
        if p.target_center_zyx is not None and p.target_radius_mm is not None:
            sides.append((p.target, p.target_center_zyx, p.target_radius_mm))
        for scan, center, radius in sides:
            key = tuple(round(float(c), 3) for c in center)
            lesions.setdefault(scan, {}).setdefault(key, float(radius))
    return {scan: [(list(k), r) for k, r in d.items()] for scan, d in lesions.items()}


def sample_scan_pairs(directed_scan_pairs, max_registrations: int, seed: int, symmetric: bool = True) -> list:
    """The registration jobs (see :func:`registration_jobs`) of ``directed_scan_pairs``, or a seeded random
    sample of ``max_registrations`` of them when there are more; sorted."""
    jobs = registration_jobs(directed_scan_pairs, symmetric)
    if len(jobs) <= max_registrations:
        return jobs
    order = np.random.default_rng([int(seed), 2]).permutation(len(jobs))[:max_registrations]
    return sorted(jobs[i] for i in order)


def _tracking_figures(raw: RawDataset, pairs: list, fingerprint: dict, out_folder: Path,
                      settings: RegistrationSettings, prior_settings: RegistrationSettings, num_processes: int,
                      symmetric: bool, progress: bool, max_registrations: int, seed: int) -> dict:
    scans = set(fingerprint["scans"])
    usable = pairs  # every pair names two imagesTr scans and has a target (require_usable_training_pairs)
    lesions = unique_lesions(usable)
    radii = [r for scan in lesions.values() for _, r in scan]
    for scan_id, scan in fingerprint["scans"].items():
        scan["num_lesions"] = len(lesions.get(scan_id, []))
    fingerprint["lesions"] = {
        "source": "pairs (unique lesion per scan and center)",
        "radius_mm": quantile_summary(radii),
        "radii_mm": sorted(radii),
        "per_scan": quantile_summary([s["num_lesions"] for s in fingerprint["scans"].values()]),
    }
    scan_paths = {s: raw.image_path(s) for s in scans}
    geometries = {s: read_geometry(scan_paths[s]) for s in scans}
    all_jobs = registration_jobs([(p.source, p.target) for p in usable], symmetric)
    sampled = set(sample_scan_pairs([(p.source, p.target) for p in usable], max_registrations, seed, symmetric))
    measured = [p for p in usable if (tuple(sorted((p.source, p.target))) if symmetric else (p.source, p.target))
                in sampled]
    per_pair = [{"pair_id": p.pair_id, "source_radius_mm": float(p.source_radius_mm),
                 "target_radius_mm": float(p.target_radius_mm), "abs_error_mm_zyx": {}, "distance_mm": {}}
                for p in measured]
    candidates, num_registrations = {}, 0
    for kind in PRIOR_KINDS:
        estimate = candidate_settings(kind, settings)
        registrations = ensure_registrations(scan_paths, out_folder, [(p.source, p.target) for p in measured],
                                             estimate, num_processes, symmetric, progress,
                                             cache_subfolder=PLANNING_CACHE)
        num_registrations = max(num_registrations, len({r["key"] for r in registrations.values()}))
        for p, record in zip(measured, per_pair):
            reg = registrations[(p.source, p.target)]["registration"]
            prior_zyx = reg.map_voxel(p.source_center_zyx, geometries[p.source], geometries[p.target])
            err = prior_error_mm_zyx(prior_zyx, p.target_center_zyx, geometries[p.target].spacing_zyx)
            record["abs_error_mm_zyx"][kind], record["distance_mm"][kind] = err, float(np.linalg.norm(err))
        seconds = {r["key"]: r["registration"].seconds for r in registrations.values()}
        candidates[kind] = _candidate_figures(per_pair, kind, list(seconds.values()), estimate,
                                              candidate_settings(kind, prior_settings))
    return {
        "num_pairs": len(usable),
        "num_directed_scan_pairs": len({(p.source, p.target) for p in usable}),
        "num_registrations": num_registrations,
        "num_scan_pairs_to_register": len(all_jobs),
        "num_pairs_measured": len(measured),
        "prior_error_registration": {
            "max_registrations": int(max_registrations), "sampled": len(sampled) < len(all_jobs),
            "scan_pairs": [f"{a}__{b}" for a, b in sorted(sampled)]},
        "registration_symmetric": bool(symmetric),
        "prior_candidates": candidates,
        "pairs": per_pair,
    }


def candidate_settings(kind: str, affine: RegistrationSettings):
    """The settings of prior ``kind`` built on the affine settings ``affine`` (single-threaded)."""
    if kind == "affine":
        return dataclasses.replace(affine, threads=1)
    return dataclasses.replace(DEFORMABLE_PRIOR, affine=dataclasses.replace(affine, threads=1), threads=1)


def _candidate_figures(per_pair: list, kind: str, seconds: list, estimate, prior) -> dict:
    """What the planner's prior rule reads of one candidate: errors, CPM@10mm, MED, seconds per scan pair."""
    errors = np.array([p["abs_error_mm_zyx"][kind] for p in per_pair], dtype=np.float64).reshape(-1, 3)
    distance = np.array([p["distance_mm"][kind] for p in per_pair], dtype=np.float64)
    radius = np.array([p["target_radius_mm"] for p in per_pair], dtype=np.float64)
    hits = distance <= np.minimum(radius, CPM_CAP_MM)
    return {
        "estimate_settings": settings_without_threads(estimate),
        "prior_settings": settings_without_threads(prior),
        "num_pairs": int(distance.size),
        "CPM@10mm": float(100.0 * hits.mean()) if distance.size else float("nan"),
        "MED": float(distance.mean()) if distance.size else float("nan"),
        "seconds_per_scan_pair_median": float(np.median(seconds)) if seconds else float("nan"),
        "prior_error_mm": {"z": quantile_summary(errors[:, 0]), "y": quantile_summary(errors[:, 1]),
                           "x": quantile_summary(errors[:, 2]), "distance": quantile_summary(distance)},
    }


def _detection_figures(results: list, fingerprint: dict) -> dict:
    instances = []
    per_slice = []
    for r in results:
        for inst in r["instances"]:
            instances.append(dict(inst, scan_id=r["scan_id"]))
        per_slice.extend(r["per_slice_counts"])
    radii = [i["radius_mm"] for i in instances]
    fingerprint["lesions"] = {
        "source": "instance masks (equivalent-sphere radius)",
        "radius_mm": quantile_summary(radii),
        "radii_mm": sorted(radii),
        "per_scan": quantile_summary([s["num_lesions"] for s in fingerprint["scans"].values()]),
    }
    per_slice = np.asarray(per_slice, dtype=np.int64)
    counts_hist = np.bincount(per_slice) if per_slice.size else np.zeros(1, dtype=np.int64)
    on_lesion = per_slice[per_slice > 0]
    return {
        "num_instances": len(instances),
        "per_slice_instance_counts": {
            "histogram": {str(k): int(c) for k, c in enumerate(counts_hist) if c},
            "max": int(per_slice.max()) if per_slice.size else 0,
            "all_slices": quantile_summary(per_slice),
            "slices_with_lesions": quantile_summary(on_lesion),
        },
        "extent_slices": quantile_summary([i["extent_slices"] for i in instances]),
        "extent_mm_zyx": {a: quantile_summary([i["extent_mm_zyx"][k] for i in instances])
                          for k, a in enumerate("zyx")},
        "instances": [{k: i[k] for k in ("scan_id", "label", "radius_mm", "extent_mm_zyx", "extent_voxels_zyx",
                                         "extent_slices")} for i in instances],
    }


def load_fingerprint(dataset) -> dict:
    """Read the stored fingerprint of a dataset (id, name or RawDataset)."""
    raw = resolve_raw_dataset(dataset)
    path = preprocessed_folder_for(raw.folder) / FINGERPRINT_FILE
    fingerprint = read_json_or_none(path)
    if fingerprint is None:
        raise FileNotFoundError(f"{path}: no fingerprint. Run lesionnet_plan_and_preprocess -d {raw.name} first.")
    return fingerprint


__all__ = ["FINGERPRINT_FILE", "extract_fingerprint", "load_fingerprint", "body_mask", "quantile_summary",
           "unique_lesions"]
