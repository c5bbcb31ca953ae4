"""Cross-validation splits by patient: ``splits_final.json`` in the preprocessed dataset folder.

The split items are what the dataset's task trains on: lesion pairs for tracking, scans for detection
(:meth:`lesionnet.preprocessing.loading.PreprocessedDataset.training_items`). All items of a patient
fall into one fold, so no anatomy is seen in training and validation at once. The file is a list of
``n_folds`` dicts ``{"train": [item_id, ...], "val": [item_id, ...]}`` (the nnU-Net layout) plus
nothing else; it is written once and then read, so a user can edit it to define custom folds. An
existing file must still cover the data: an item in no fold (e.g. of a patient added to the dataset
after the file was made) is an error naming the patients, never a patient silently left out.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from lesionnet.utils.files import load_json, write_json

logger = logging.getLogger(__name__)

SPLITS_FILE = "splits_final.json"
NUM_FOLDS = 5


def make_patient_splits(item_patients: dict, num_folds: int = NUM_FOLDS, seed: int = 12345) -> list[dict]:
    """Split items into ``num_folds`` folds by patient.

    Args:
        item_patients: ``{item_id: patient_id}``.
        num_folds: number of folds; capped at the number of patients (at least 2 patients are needed).
        seed: seed of the patient shuffle.

    Returns:
        ``[{"train": sorted item ids, "val": sorted item ids}, ...]``; each patient's items are in the
        validation set of exactly one fold.
    """
    patients = sorted(set(item_patients.values()))
    if len(patients) < 2:
        raise ValueError(f"cross-validation needs at least 2 patients, the training data have {len(patients)}.")
    folds = min(int(num_folds), len(patients))
    order = np.random.default_rng(seed).permutation(len(patients))
    val_patients = [set() for _ in range(folds)]
    for rank, index in enumerate(order):
        val_patients[rank % folds].add(patients[index])
    splits = []
    for fold_patients in val_patients:
        val = sorted(p for p, patient in item_patients.items() if patient in fold_patients)
        train = sorted(p for p, patient in item_patients.items() if patient not in fold_patients)
        splits.append({"train": train, "val": val})
    return splits


def load_or_create_splits(folder: str | os.PathLike, item_patients: dict, num_folds: int = NUM_FOLDS) -> list[dict]:
    """Read ``folder/splits_final.json``, or create it with :func:`make_patient_splits` (atomically).

    An existing file must name only known item ids, and every item of ``item_patients`` must be in some
    fold; otherwise the error names the file, the items or patients, and the fix.
    """
    path = Path(folder) / SPLITS_FILE
    if path.is_file():
        splits = load_json(path)
        known = set(item_patients)
        if not isinstance(splits, list) or not all(isinstance(s, dict) and {"train", "val"} <= set(s)
                                                   for s in splits):
            raise ValueError(f"{path}: expected a list of {{'train': [...], 'val': [...]}} folds.")
        unknown = {p for s in splits for key in ("train", "val") for p in s[key]} - known
        if unknown:
            raise ValueError(f"{path}: names items that are not in the training data: {sorted(unknown)[:5]}. "
                             "Delete the file to recreate the splits.")
        _check_every_item_in_a_fold(path, splits, item_patients)
        return splits
    splits = make_patient_splits(item_patients, num_folds)
    write_json(path, splits)
    logger.info("Created %d-fold patient splits in %s", len(splits), path)
    return splits


def _check_every_item_in_a_fold(path: Path, splits: list[dict], item_patients: dict) -> None:
    """Raise a ValueError naming the patients whose items are in the data but in no fold of ``splits``."""
    in_folds = {p for s in splits for key in ("train", "val") for p in s[key]}
    left_out: dict = {}
    for item, patient in sorted(item_patients.items()):
        if item not in in_folds:
            left_out.setdefault(patient, []).append(item)
    if not left_out:
        return
    known_patients = {item_patients[p] for p in in_folds if p in item_patients}
    described = "; ".join(f"patient {patient}{'' if patient in known_patients else ' (new)'}: "
                          f"{len(items)} item(s), e.g. {', '.join(items[:3])}" for patient, items in left_out.items())
    raise ValueError(f"{path}: the training data have items in no fold of this file ({described}). They would be "
                     "silently left out of training. Delete splits_final.json to recreate the splits with every "
                     "patient (the folds change), or add the items to the 'val' list of one fold and the 'train' "
                     "lists of the others.")


def fold_item_ids(splits: list[dict], fold: int | str) -> tuple[list[str], list[str]]:
    """``(train ids, val ids)`` of ``fold``; ``"all"`` trains on every item and validates on none."""
    if fold == "all":
        every = sorted({p for s in splits for key in ("train", "val") for p in s[key]})
        return every, []
    fold = int(fold)
    if not 0 <= fold < len(splits):
        raise ValueError(f"fold {fold} does not exist; the splits have folds 0..{len(splits) - 1} (or 'all').")
    return list(splits[fold]["train"]), list(splits[fold]["val"])
