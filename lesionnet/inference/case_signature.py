"""Signatures of prediction cases: ``--continue`` reuses a case file only when nothing it depends on changed.

Each case file (``OUT/cases/{source}__{target}.json``) records a ``signature``:

* ``run``: what the whole run depends on: the method (``+chain`` in chain mode), the model folder, plans,
  folds and checkpoint name, the SHA-256 of every checkpoint file used (or of the plans file of an
  untrained method that reads the plans), the method's recorded settings (registration, ...), the step
  size, the search region and whether heatmaps are written;
* ``scans``: size and modification time (ns) of every scan file the case reads (source and target; in
  chain mode every scan of the input, since hops pass through intermediate scans);
* ``pairs``: the case's pairs as given (ids, scans, centers and radii).

:func:`signature_differences` says, in words, why a stored signature no longer matches (the reasons
``lesionnet_predict --continue`` logs before predicting a case again).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from lesionnet.datasets.raw_format import TrackingPair
from lesionnet.planning.plans_io import plans_path_for
from lesionnet.training.checkpoints import CHECKPOINT_NAMES

_CHUNK_BYTES = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_stamp(path: str | os.PathLike) -> dict:
    """``{"size": bytes, "mtime_ns": ...}`` of a file: cheap and changes whenever the file is rewritten."""
    stat = Path(path).stat()
    return {"size": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns)}


def _plain(value):
    """``value`` as it reads back from JSON (tuples become lists), so stored and fresh signatures compare."""
    return json.loads(json.dumps(value, default=str))


def run_signature(case_method: str, description: dict, step_size: float, search_region_zyx, heatmaps: bool) -> dict:
    """What every case of a run depends on (see the module docstring). ``description`` is what the run
    records in ``predictions.json`` (model folder, folds, checkpoint, plans, the method's settings)."""
    signature = {"method": case_method, "description": description, "step_size": step_size,
                 "search_region_zyx": search_region_zyx, "heatmaps": bool(heatmaps)}
    if "model" in description:
        folder = Path(description["model"])
        name = CHECKPOINT_NAMES[description.get("checkpoint", "final")]
        signature["model_folder"] = str(folder.resolve())
        signature["checkpoint_sha256"] = {str(fold): file_sha256(folder / f"fold_{fold}" / name)
                                          for fold in description.get("folds", [])}
    if "plans" in description:
        dataset, plans_name = str(description["plans"]).split("/", 1)
        signature["plans_sha256"] = file_sha256(plans_path_for(dataset, plans_name))
    return _plain(signature)


def case_signature(run: dict, scan_paths: dict, pairs: list[TrackingPair], chain: bool) -> dict:
    """The signature of one case: ``run`` (:func:`run_signature`), its scans' stamps and its pairs."""
    scans = sorted(scan_paths) if chain else sorted({pairs[0].source, pairs[0].target})
    return _plain({"run": run, "scans": {scan: file_stamp(scan_paths[scan]) for scan in scans if scan in scan_paths},
                   "pairs": [p.to_json() for p in pairs]})


_RUN_KEYS = {"method": "method", "model_folder": "model folder", "checkpoint_sha256": "checkpoint file",
             "plans_sha256": "plans file", "step_size": "step size", "search_region_zyx": "search region",
             "heatmaps": "--save_heatmaps"}


def signature_differences(stored: dict | None, current: dict) -> list[str]:
    """Why ``stored`` (a case file's signature) does not match ``current``: ``[]`` when it matches."""
    if not isinstance(stored, dict):
        return ["the case file has no signature (written by an older lesionnet)"]
    reasons = []
    old_run, new_run = stored.get("run") or {}, current["run"]
    for key, label in _RUN_KEYS.items():
        if old_run.get(key) != new_run.get(key):
            reasons.append(f"{label} changed")
    old_description, new_description = old_run.get("description") or {}, new_run["description"]
    for key in sorted(set(old_description) | set(new_description)):
        if old_description.get(key) != new_description.get(key) and key != "model":
            reasons.append(f"{key} changed ({old_description.get(key)!r} -> {new_description.get(key)!r})"
                           if key in ("folds", "checkpoint", "plans") else f"{key} settings changed")
    old_scans, new_scans = stored.get("scans") or {}, current["scans"]
    changed = [scan for scan in sorted(set(old_scans) | set(new_scans)) if old_scans.get(scan) != new_scans.get(scan)]
    if changed:
        reasons.append(f"scan file(s) changed: {', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}")
    if stored.get("pairs") != current["pairs"]:
        reasons.append("the case's pairs changed")
    return reasons


__all__ = ["run_signature", "case_signature", "signature_differences", "file_sha256", "file_stamp"]
