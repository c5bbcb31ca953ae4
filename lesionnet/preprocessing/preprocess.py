"""Preprocessing: resample + normalise every training scan, store it compactly, precompute tracking priors.

For each data configuration of the plans (``lesionnetPlans_3d`` for tracking, ``lesionnetPlans_2.5d_nativez``
for detection) this writes, under ``$lesionnet_preprocessed/DatasetXXX_Name/<data_identifier>/``:

* ``{scan_id}.b2nd`` — the resampled, normalised image, float32 ``[z, y, x]``, blosc2 (zstd +
  bit-shuffle, chunked so that a training crop decompresses only the chunks it touches);
* ``{scan_id}_seg.b2nd`` — detection only: the instance mask, resampled nearest-neighbour (uint8/int16);
* ``{scan_id}.json`` — sidecar (plain JSON, no pickle): preprocessed and original geometry (spacing,
  origin, direction, shape), normalisation, the input files' signatures and the plan key it was made
  with, the output files' signatures, and (detection) the instances with their 3D boxes. It is
  written last, so it is the case's commit record: a case without a valid sidecar is redone;
* ``pairs.json`` — tracking only: every training pair with centers converted to the preprocessed
  grids (``(z, y, x)`` voxel indices), its planned prior (affine or deformable: ``prior_center_zyx`` =
  ``T(source_center)`` in the target's preprocessed grid, ``prior_radius_mm`` = ``r · |det A|^(1/3)``)
  and, per directed scan pair, the registration dict. The Gaussian maps a method needs (attention masks,
  anatomy signals, labels) are made on the fly on each training crop from these centers and radii,
  which costs microseconds and no disk.

Each scan goes through :func:`lesionnet.preprocessing.case.preprocess_case` and each prior through
:func:`lesionnet.preprocessing.case.lesion_on_grids`, the functions every predictor runs on its input.

Registrations come from ``registrations/`` (filled by the fingerprint run); only missing or stale
ones are computed. Re-running redoes only cases whose input files (size, mtime) or relevant plan
part changed; nothing is rewritten otherwise. Every file is written atomically.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from lesionnet.datasets.dataset_id import resolve_raw_dataset
from lesionnet.datasets.image_io import read_geometry, read_image
from lesionnet.datasets.instances import instance_statistics
from lesionnet.datasets.verification.pairs import require_usable_training_pairs
from lesionnet.paths import preprocessed_folder_for
from lesionnet.preprocessing.case import lesion_on_grids, preprocess_case, registration_settings_of
from lesionnet.preprocessing.resampling import map_voxel, resample_array, target_geometry
from lesionnet.registration.cache import DEFAULT_PRIOR_REGISTRATION, ensure_registrations, registration_key
from lesionnet.utils.files import TEMP_PREFIX, atomic_path
from lesionnet.utils.manifest import (
    file_signature,
    read_json_or_none,
    stable_hash,
    write_json_if_changed,
)
from lesionnet.utils.parallel import default_num_processes, run_jobs

logger = logging.getLogger(__name__)

PAIRS_FILE = "pairs.json"
IMAGE_SUFFIX = ".b2nd"
SEG_SUFFIX = "_seg.b2nd"
PREPROCESS_VERSION = 1


def plan_key(data_configuration: dict) -> str:
    """Hash of what shapes a preprocessed case: the data configuration (without the registration
    settings, which only affect ``pairs.json``) and the code version."""
    config = {k: v for k, v in data_configuration.items() if k != "registration"}
    return stable_hash({"version": PREPROCESS_VERSION, "config": config})


def _chunks(shape_zyx) -> tuple:
    chunks = tuple(int(min(n, c)) for n, c in zip(shape_zyx, (16, 64, 64)))
    blocks = tuple(int(max(1, min(c, b))) for c, b in zip(chunks, (8, 32, 32)))
    return chunks, blocks


def write_array(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` atomically as a blosc2 ``.b2nd`` file (zstd level 5, bit-shuffle, chunked)."""
    import blosc2
    chunks, blocks = _chunks(array.shape)
    cparams = {"codec": blosc2.Codec.ZSTD, "clevel": 5, "filters": [blosc2.Filter.BITSHUFFLE], "nthreads": 1}
    with atomic_path(path) as tmp:
        blosc2.asarray(np.ascontiguousarray(array), urlpath=str(tmp), mode="w", chunks=chunks, blocks=blocks,
                       cparams=cparams)


def _case_up_to_date(folder: Path, scan_id: str, inputs: dict, key: str) -> bool:
    sidecar = read_json_or_none(folder / f"{scan_id}.json")
    if not isinstance(sidecar, dict) or sidecar.get("plan_key") != key or sidecar.get("inputs") != inputs:
        return False
    for name, sig in sidecar.get("outputs", {}).items():
        path = folder / name
        if not path.is_file() or file_signature(path) != sig:
            return False
    return True


def _preprocess_case(job: tuple) -> dict:
    """Worker: resample + normalise one scan (and its mask), write arrays then the sidecar."""
    scan_id, image_path, label_path, folder, data_config, key, inputs = job
    folder = Path(folder)
    image, geometry = read_image(image_path)
    normalised, target = preprocess_case(image, geometry, data_config)
    interpolation = data_config.get("image_interpolation", "linear")
    outputs = {}
    write_array(folder / f"{scan_id}{IMAGE_SUFFIX}", normalised)
    outputs[f"{scan_id}{IMAGE_SUFFIX}"] = file_signature(folder / f"{scan_id}{IMAGE_SUFFIX}")
    sidecar = {
        "scan_id": scan_id,
        "plan_key": key,
        "inputs": inputs,
        "geometry": target.to_dict(),
        "original_geometry": geometry.to_dict(),
        "normalization": data_config["normalization"],
        "image_interpolation": interpolation,
        "image_file": f"{scan_id}{IMAGE_SUFFIX}",
        "dtype": "float32",
        "intensity_after": {"min": float(normalised.min()), "max": float(normalised.max()),
                            "mean": float(normalised.mean())},
    }
    if label_path is not None:
        labels, _ = read_image(label_path, dtype=None)
        labels = np.rint(labels).astype(np.int32)
        seg = resample_array(labels, geometry, target, "nearest", dtype=np.int32)
        dtype = np.uint8 if seg.max(initial=0) < 256 else np.int16
        seg = seg.astype(dtype)
        write_array(folder / f"{scan_id}{SEG_SUFFIX}", seg)
        outputs[f"{scan_id}{SEG_SUFFIX}"] = file_signature(folder / f"{scan_id}{SEG_SUFFIX}")
        stats = instance_statistics(seg, target.spacing_zyx)
        original = instance_statistics(labels, geometry.spacing_zyx)
        lost = sorted({i["label"] for i in original["instances"]} - {i["label"] for i in stats["instances"]})
        sidecar.update({
            "seg_file": f"{scan_id}{SEG_SUFFIX}",
            "seg_dtype": np.dtype(dtype).name,
            "num_instances": len(stats["instances"]),
            "instances": [{"label": i["label"], "box_zyx": i["box_zyx"], "voxels": i["voxels"],
                           "radius_mm": i["radius_mm"], "extent_slices": i["extent_slices"]}
                          for i in stats["instances"]],
            "instances_lost_by_resampling": lost,
        })
    sidecar["outputs"] = outputs
    write_json_if_changed(folder / f"{scan_id}.json", sidecar)
    return {"scan_id": scan_id, "shape_zyx": list(target.shape_zyx)}


def preprocess_dataset(dataset, plans: dict, num_processes: int | None = None,
                       data_identifiers=None, output_folder: str | os.PathLike | None = None,
                       progress: bool = True) -> dict:
    """Preprocess a dataset's training scans for every planned data configuration.

    Args:
        dataset: dataset id, folder name, path or RawDataset.
        plans: the plans dict (:func:`lesionnet.planning.plans_io.load_plans` reads ``lesionnet_plans.json``).
        num_processes: worker processes (default: usable CPU cores).
        data_identifiers: restrict to these data configurations (default: all in the plans).
        output_folder: preprocessed dataset folder (default ``$lesionnet_preprocessed/<name>``).
        progress: tqdm progress bars.

    Returns:
        ``{data_identifier: {"folder", "processed": [...], "up_to_date": n, "removed": [...],
        "pairs_written": bool, "seconds"}}``.
    """
    raw = resolve_raw_dataset(dataset)
    out_folder = Path(output_folder) if output_folder is not None else preprocessed_folder_for(raw.folder)
    num_processes = num_processes or default_num_processes()
    scans = raw.scan_ids("Tr")
    summary = {}
    for data_id, data_config in plans["data_configurations"].items():
        if data_identifiers is not None and data_id not in data_identifiers:
            continue
        start = time.perf_counter()
        folder = out_folder / data_id
        folder.mkdir(parents=True, exist_ok=True)
        key = plan_key(data_config)
        jobs, up_to_date = [], 0
        for scan_id in scans:
            inputs = {"image": file_signature(raw.image_path(scan_id))}
            label_path = None
            if raw.task == "detection":
                label_path = str(raw.label_path(scan_id))
                inputs["label"] = file_signature(label_path)
            if _case_up_to_date(folder, scan_id, inputs, key):
                up_to_date += 1
                continue
            jobs.append((scan_id, str(raw.image_path(scan_id)), label_path, str(folder), data_config, key, inputs))
        processed = run_jobs(_preprocess_case, jobs, num_processes, progress, f"preprocess {data_id}", unit="scan")
        removed = _remove_stale_cases(folder, set(scans))
        pairs_written = False
        if raw.task == "tracking":
            pairs_written = _write_tracking_pairs(raw, folder, out_folder, data_config, key, num_processes, progress)
        summary[data_id] = {"folder": str(folder), "processed": sorted(r["scan_id"] for r in processed),
                            "up_to_date": up_to_date, "removed": removed, "pairs_written": pairs_written,
                            "seconds": round(time.perf_counter() - start, 3)}
        logger.info("%s/%s: %d scan(s) preprocessed, %d up to date%s", raw.name, data_id, len(processed), up_to_date,
                    ", pairs.json updated" if pairs_written else "")
    return summary


def _remove_stale_cases(folder: Path, scans: set) -> list:
    """Delete outputs of scans that left the dataset, and temporary files of interrupted runs."""
    removed = []
    for path in sorted(folder.iterdir()):
        name = path.name
        if name.startswith(TEMP_PREFIX):
            path.unlink(missing_ok=True)
            removed.append(name)
            continue
        for suffix in (SEG_SUFFIX, IMAGE_SUFFIX, ".json"):
            if name.endswith(suffix) and name != PAIRS_FILE:
                scan_id = name[: -len(suffix)]
                if scan_id not in scans:
                    path.unlink(missing_ok=True)
                    removed.append(name)
                break
    return removed


def _write_tracking_pairs(raw, folder: Path, out_folder: Path, data_config: dict, key: str, num_processes: int,
                          progress: bool) -> bool:
    scans = set(raw.scan_ids("Tr"))
    pairs = raw.pairs("Tr")
    require_usable_training_pairs(raw.pairs_path("Tr"), pairs, scans, raw.name)  # never left out silently
    settings, symmetric = registration_settings_of(data_config, DEFAULT_PRIOR_REGISTRATION)
    scan_paths = {s: raw.image_path(s) for s in scans}
    registrations = ensure_registrations(scan_paths, out_folder, [(p.source, p.target) for p in pairs], settings,
                                         num_processes, symmetric, progress)
    raw_geometry = {s: read_geometry(scan_paths[s]) for s in scans}
    pre_geometry = {s: target_geometry(g, data_config["target_spacing_zyx"]) for s, g in raw_geometry.items()}
    records = []
    for p in pairs:
        src_raw, tgt_raw = raw_geometry[p.source], raw_geometry[p.target]
        src_pre, tgt_pre = pre_geometry[p.source], pre_geometry[p.target]
        reg = registrations[(p.source, p.target)]["registration"]
        source_zyx, prior_zyx, prior_radius = lesion_on_grids(reg, p.source_center_zyx, p.source_radius_mm, src_raw,
                                                              src_pre, tgt_pre)
        target_zyx = map_voxel(p.target_center_zyx, tgt_raw, tgt_pre)
        records.append({
            "pair_id": p.pair_id, "source": p.source, "target": p.target, "patient": p.patient_id,
            "source_center_zyx": [float(v) for v in source_zyx], "source_radius_mm": float(p.source_radius_mm),
            "target_center_zyx": [float(v) for v in target_zyx], "target_radius_mm": float(p.target_radius_mm),
            "prior_center_zyx": [float(v) for v in prior_zyx], "prior_radius_mm": float(prior_radius),
            "source_center_zyx_raw": [float(v) for v in p.source_center_zyx],
            "target_center_zyx_raw": [float(v) for v in p.target_center_zyx],
            "scan_pair": registration_key(p.source, p.target),
        })
    content = {
        "plan_key": key,
        "coordinates": ("centers are continuous voxel indices (z, y, x) of the preprocessed arrays; "
                        "*_raw of the raw scans"),
        "pairs": records,
        "scan_pairs": {registration_key(s, t): {"source": s, "target": t, "inverted": bool(v["inverted"]),
                                                "registered_as": v["key"], "registration": v["registration"].to_dict()}
                       for (s, t), v in sorted(registrations.items())},
        "geometries": {s: g.to_dict() for s, g in sorted(pre_geometry.items())},
    }
    return write_json_if_changed(folder / PAIRS_FILE, content)


__all__ = ["preprocess_dataset", "plan_key", "write_array", "PAIRS_FILE", "IMAGE_SUFFIX", "SEG_SUFFIX"]
