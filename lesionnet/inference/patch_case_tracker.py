"""A patch tracker (TLT, DLT, the matcher) on raw input scans, one case (source scan → target scan) at a
time, for ``lesionnet_predict``.

Per case, exactly as for the training data: both scans go through
:func:`lesionnet.preprocessing.case.preprocess_case` (the plan's target spacing and normalisation),
the affine prior comes from :func:`lesionnet.preprocessing.case.register_scan_pair` with the plan's
registration settings and direction rule, and each lesion is placed on the grids by
:func:`lesionnet.preprocessing.case.lesion_on_grids`. Every lesion is then tracked with the method's
``track`` function (:data:`TrackFunction`, e.g. :func:`lesionnet.methods.tlt.tracker.track_lesion`) and
the prediction is mapped back to the raw target scan's voxels. With several folds, the predicted world
points are averaged.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.image_io import write_image
from lesionnet.datasets.prediction_format import prediction_record_from_pair
from lesionnet.datasets.raw_format import TrackingPair
from lesionnet.inference.model_discovery import LoadedFold
from lesionnet.inference.tracking_input import TrackingInput
from lesionnet.preprocessing.case import lesion_on_grids, preprocess_scan, register_scan_pair, registration_settings_of


@dataclass
class TrackedLesion:
    """What a ``track`` function returns: ``center_zyx`` in the target volume's voxels; ``heatmap_zyx`` the
    (blended) heatmap of the search region (``[z, y, x]``, float32 in [0, 1]) starting at
    ``region_start_zyx`` of the target volume; ``peak`` its maximum."""

    center_zyx: np.ndarray
    heatmap_zyx: np.ndarray
    region_start_zyx: np.ndarray
    peak: float


#: ``track(network, source_image_zyx, source_center_zyx, source_radius_mm, source_spacing_zyx, target_image_zyx,
#: prior_center_zyx, prior_radius_mm, target_spacing_zyx, template_size_zyx, search_size_zyx, search_region_zyx,
#: step_size, device) -> TrackedLesion``: one lesion on the network's grids
TrackFunction = Callable[..., TrackedLesion]


class PatchCaseTracker:
    """``tracker(tracking_input, pairs) -> records`` for the pairs of one scan pair (see the module docstring).

    Args:
        track: the method's :data:`TrackFunction`.
        folds: the trained folds (:func:`lesionnet.inference.model_discovery.load_trained_models`); their
            ``network.json`` holds the plan section and the data configuration.
        device: compute device.
        step_size: sliding-window step (fraction of the search patch).
        search_region_zyx: region scanned around the prior (default: the planned search patch).
        heatmap_folder: when set, write each pair's blended heatmap as ``{pair_id}.nii.gz`` there.
    """

    def __init__(self, track: TrackFunction, folds: list[LoadedFold], device="cpu", step_size: float = 0.5,
                 search_region_zyx=None, heatmap_folder: str | Path | None = None):
        if not folds:
            raise ValueError("prediction needs at least one trained fold.")
        self.track = track
        self.folds = folds
        info = folds[0].info                    # the plan section and data configuration of every fold
        self.section = info["configuration"]
        self.data_configuration = info["data_configuration"]
        self.device = device
        self.step_size = float(step_size)
        self.search_region_zyx = search_region_zyx
        self.heatmap_folder = Path(heatmap_folder) if heatmap_folder else None
        # the training priors' settings; all cores here (the priors were registered single-threaded)
        self.registration_settings, self.symmetric = registration_settings_of(self.data_configuration, threads=None)
        self.description = {"registration": self.registration_settings.to_dict()}

    def __call__(self, tracking_input: TrackingInput, pairs: list[TrackingPair]) -> list[dict]:
        start = time.perf_counter()
        source_id, target_id = pairs[0].source, pairs[0].target
        source = preprocess_scan(tracking_input.scan_paths[source_id], self.data_configuration)
        target = preprocess_scan(tracking_input.scan_paths[target_id], self.data_configuration)
        registration = register_scan_pair(source, target, source_id, target_id, self.registration_settings,
                                          self.symmetric)
        shared = (time.perf_counter() - start) / len(pairs)
        records = []
        for pair in pairs:
            t0 = time.perf_counter()
            source_zyx, prior_zyx, prior_radius = lesion_on_grids(registration, pair.source_center_zyx,
                                                                  pair.source_radius_mm, source.raw_geometry,
                                                                  source.geometry, target.geometry)
            worlds, peaks, results = [], [], []
            for fold in self.folds:
                result = self.track(fold.model.network, source.image, source_zyx, pair.source_radius_mm,
                                    source.geometry.spacing_zyx, target.image, prior_zyx, prior_radius,
                                    target.geometry.spacing_zyx, self.section["template_patch_size_zyx"],
                                    self.section["search_patch_size_zyx"], self.search_region_zyx, self.step_size,
                                    self.device)
                worlds.append(target.geometry.voxel_to_world(result.center_zyx))
                peaks.append(result.peak)
                results.append(result)
            world = np.mean(worlds, axis=0)
            predicted_zyx = target.raw_geometry.world_to_voxel(world)
            if self.heatmap_folder is not None:
                self._write_heatmap(pair.pair_id, results, target.geometry)
            records.append(prediction_record_from_pair(
                pair, predicted_zyx.tolist(), target.raw_geometry.spacing_zyx, predicted_center_world=world.tolist(),
                confidence=float(np.mean(peaks)), processing_time_s=shared + time.perf_counter() - t0))
        return records

    def _write_heatmap(self, pair_id: str, results: list, grid: Geometry) -> None:
        heatmap = np.mean([r.heatmap_zyx for r in results], axis=0).astype(np.float32)
        origin = grid.voxel_to_world(results[0].region_start_zyx.astype(np.float64))
        geometry = Geometry(grid.spacing_xyz, tuple(float(v) for v in origin), grid.direction, heatmap.shape)
        write_image(self.heatmap_folder / f"{pair_id}.nii.gz", heatmap, geometry)


__all__ = ["TrackedLesion", "TrackFunction", "PatchCaseTracker"]
