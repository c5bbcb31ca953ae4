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


def validate_patch_tracker(track, network, data, item_ids, section: dict, device) -> dict:
    """:func:`tracking_validation_metrics` of a patch tracker on the preprocessed pairs ``item_ids`` of ``data``
    (a :class:`lesionnet.preprocessing.loading.PreprocessedDataset`): each pair tracked by ``track`` (a
    :data:`lesionnet.inference.patch_case_tracker.TrackFunction`) with the section's patch sizes, from the
    stored prior; ``{}`` without pairs."""
    pairs = data.pairs_by_id(item_ids)
    if not pairs:
        return {}
    predicted, spacings = [], []
    for pair in pairs:
        source, target = data.cached_case(pair.source), data.cached_case(pair.target)
        result = track(network, source.image, pair.source_center_zyx, pair.source_radius_mm,
                       source.geometry.spacing_zyx, target.image, pair.prior_center_zyx, pair.prior_radius_mm,
                       target.geometry.spacing_zyx, section["template_patch_size_zyx"],
                       section["search_patch_size_zyx"], device=device)
        predicted.append(result.center_zyx)
        spacings.append(target.geometry.spacing_zyx)
    return tracking_validation_metrics(predicted, [p.target_center_zyx for p in pairs], spacings,
                                       [p.target_radius_mm for p in pairs], [p.pair_id for p in pairs])


__all__ = ["tracking_validation_metrics", "validate_patch_tracker"]
