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


__all__ = ["tracking_validation_metrics"]
