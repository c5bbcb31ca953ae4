"""Validation metrics of a tracker during training: the DLS benchmark's figures on the fold's pairs, with
the names the trainer logs (``cpm_10mm``, ``cpm_radius``, ``med_mm``, ``med_std_mm``, ``n``)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from lesionnet.evaluation.tracking_metrics import evaluate_tracking


def tracking_validation_metrics(predicted_center_zyx, target_center_zyx, target_spacing_zyx,
                                target_radius_mm, pair_ids: Sequence | None = None) -> dict:
    """``{"cpm_10mm", "cpm_radius", "med_mm", "med_std_mm", "n"}`` (percent, mm) of ``(n, 3)`` predicted and
    true centers ``(z, y, x)`` (voxels of the target grids) with spacings ``(n, 3)`` mm and radii mm."""
    evaluation = evaluate_tracking(np.asarray(predicted_center_zyx, dtype=np.float64),
                                   np.asarray(target_center_zyx, dtype=np.float64),
                                   np.asarray(target_spacing_zyx, dtype=np.float64), np.asarray(target_radius_mm),
                                   pair_ids)
    s = evaluation.summary()
    return {"cpm_10mm": s["CPM@10mm"], "cpm_radius": s["CPM@Radius"], "med_mm": s["MED"],
            "med_std_mm": s["MED_std"], "n": s["n"]}


def patch_tracker_records(track, network, data, item_ids, section: dict, device) -> list[dict]:
    """One record per preprocessed pair of ``item_ids`` in ``data`` (a
    :class:`lesionnet.preprocessing.loading.PreprocessedDataset`), tracked by ``track`` (a
    :data:`lesionnet.inference.patch_case_tracker.TrackFunction`) with the section's patch sizes from the
    stored prior: ``{"pair_id", "predicted_zyx", "target_zyx", "spacing_zyx", "radius_mm"}`` (target-grid
    voxels, mm), plain values so that records of several processes can be gathered."""
    records = []
    for pair in data.pairs_by_id(item_ids):
        source, target = data.cached_case(pair.source), data.cached_case(pair.target)
        result = track(network, source.image, pair.source_center_zyx, pair.source_radius_mm,
                       source.geometry.spacing_zyx, target.image, pair.prior_center_zyx, pair.prior_radius_mm,
                       target.geometry.spacing_zyx, section["template_patch_size_zyx"],
                       section["search_patch_size_zyx"], device=device)
        records.append({"pair_id": pair.pair_id, "predicted_zyx": [float(v) for v in result.center_zyx],
                        "target_zyx": [float(v) for v in pair.target_center_zyx],
                        "spacing_zyx": [float(v) for v in target.geometry.spacing_zyx],
                        "radius_mm": float(pair.target_radius_mm)})
    return records


def patch_tracker_summary(records: list[dict]) -> dict:
    """:func:`tracking_validation_metrics` of :func:`patch_tracker_records` (of one or several processes);
    ``{}`` without records."""
    if not records:
        return {}
    return tracking_validation_metrics([r["predicted_zyx"] for r in records], [r["target_zyx"] for r in records],
                                       [r["spacing_zyx"] for r in records], [r["radius_mm"] for r in records],
                                       [r["pair_id"] for r in records])


def validate_patch_tracker(track, network, data, item_ids, section: dict, device) -> dict:
    """The validation metrics of a patch tracker on the pairs ``item_ids``: the summary of their records."""
    return patch_tracker_summary(patch_tracker_records(track, network, data, item_ids, section, device))


class PatchTrackerValidation:
    """The validation parts of a patch-tracker method (mixed into its method class, which sets
    ``track_function = staticmethod(its TrackFunction)``): records per pair, their summary, and ``validate``
    as the summary of the records, so that data-parallel training can compute records in shards."""

    track_function = None

    def validation_records(self, model, data, item_ids, section: dict, device) -> list[dict]:
        return patch_tracker_records(self.track_function, model.network, data, item_ids, section, device)

    def validation_summary(self, records: list[dict]) -> dict:
        return patch_tracker_summary(records)

    def validate(self, model, data, item_ids, section: dict, device) -> dict:
        return self.validation_summary(self.validation_records(model, data, item_ids, section, device))


__all__ = ["PatchTrackerValidation", "tracking_validation_metrics", "patch_tracker_records", "patch_tracker_summary",
           "validate_patch_tracker"]
