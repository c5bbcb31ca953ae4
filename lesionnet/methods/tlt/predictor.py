"""TLT on raw input scans for ``lesionnet_predict``: the shared
:class:`lesionnet.inference.patch_case_tracker.PatchCaseTracker` with TLT's
:func:`lesionnet.methods.tlt.tracker.track_lesion`."""
from __future__ import annotations

from lesionnet.inference.patch_case_tracker import PatchCaseTracker
from lesionnet.methods.tlt.tracker import track_lesion


class TLTCaseTracker(PatchCaseTracker):
    """``PatchCaseTracker(track_lesion, folds, device, step_size, search_region_zyx, heatmap_folder)``."""

    def __init__(self, folds, device="cpu", step_size: float = 0.5, search_region_zyx=None, heatmap_folder=None):
        super().__init__(track_lesion, folds, device, step_size, search_region_zyx, heatmap_folder)


__all__ = ["TLTCaseTracker"]
