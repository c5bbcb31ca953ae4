"""TLT on raw input scans, one case (source scan → target scan) at a time, for ``lesionnet_predict``.

Per case: read both scans, resample them to the model's target spacing and normalise them as in
preprocessing, register source → target with the plan's affine settings (the prior), then track every
lesion of the case with :func:`lesionnet.inference.tlt_tracker.track_lesion` and map the prediction back
to the raw target scan's voxels. With several folds, the predicted world points are averaged.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.image_io import read_image, to_sitk, write_image
from lesionnet.datasets.raw_format import TrackingPair
from lesionnet.evaluation.prediction_io import prediction_record_from_pair
from lesionnet.inference.model_discovery import TrainedModel, load_fold
from lesionnet.inference.tlt_tracker import track_lesion
from lesionnet.inference.tracking_input import TrackingInput
from lesionnet.networks.tlt import build_tlt
from lesionnet.preprocessing.normalization import normalize
from lesionnet.preprocessing.resampling import resample_array, target_geometry
from lesionnet.registration.affine import RegistrationSettings, register_affine
from lesionnet.registration.anatomy_maps import project_lesion


class TLTCaseTracker:
    """``tracker(tracking_input, pairs) -> records`` for the pairs of one scan pair (see the module docstring).

    Args:
        model: the trained model; ``folds`` and ``checkpoint`` choose its checkpoints.
        device: compute device.
        step_size: sliding-window step (fraction of the search patch).
        search_region_zyx: region scanned around the prior (default: the planned search patch).
        heatmap_folder: when set, write each pair's blended heatmap as ``{pair_id}.nii.gz`` there.
    """

    def __init__(self, model: TrainedModel, checkpoint: str = "final", device="cpu", step_size: float = 0.5,
                 search_region_zyx=None, heatmap_folder: str | Path | None = None):
        self.device = torch.device(device)
        self.networks = []
        for fold in model.folds:
            self.info, state = load_fold(model, fold, checkpoint)   # network.json is the same in every fold
            network = build_tlt(state["network_config"])
            network.load_state_dict(state["model"])
            self.networks.append(network.to(self.device).eval())
        self.step_size = float(step_size)
        self.search_region_zyx = search_region_zyx
        self.heatmap_folder = Path(heatmap_folder) if heatmap_folder else None
        reg = dict(self.info.get("registration", {}).get("settings", {}))
        reg.pop("threads", None)
        self.registration_settings = RegistrationSettings(**{k: tuple(v) if isinstance(v, list) else v
                                                             for k, v in reg.items()})

    def _prepare(self, path: Path) -> tuple[np.ndarray, Geometry, Geometry, object]:
        image, geometry = read_image(path)
        grid = target_geometry(geometry, self.info["target_spacing_zyx"])
        resampled = normalize(resample_array(image, geometry, grid, "linear"), self.info["normalization"])
        return resampled, grid, geometry, to_sitk(image, geometry)

    def __call__(self, tracking_input: TrackingInput, pairs: list[TrackingPair]) -> list[dict]:
        start = time.perf_counter()
        source, target = pairs[0].source, pairs[0].target
        src_image, src_grid, src_raw, src_sitk = self._prepare(tracking_input.scan_paths[source])
        tgt_image, tgt_grid, tgt_raw, tgt_sitk = self._prepare(tracking_input.scan_paths[target])
        registration = register_affine(src_sitk, tgt_sitk, self.registration_settings)
        shared = (time.perf_counter() - start) / len(pairs)
        records = []
        for pair in pairs:
            t0 = time.perf_counter()
            source_xyz = src_grid.world_to_index(src_raw.index_to_world(pair.source_center_xyz))
            prior_xyz, prior_radius = project_lesion(registration, source_xyz, pair.source_radius_mm, src_grid,
                                                     tgt_grid)
            worlds, peaks, results = [], [], []
            for network in self.networks:
                result = track_lesion(network, src_image, source_xyz, pair.source_radius_mm, src_grid.spacing_xyz,
                                      tgt_image, prior_xyz, prior_radius, tgt_grid.spacing_xyz,
                                      self.info["template_patch_size_zyx"], self.info["search_patch_size_zyx"],
                                      self.search_region_zyx, self.step_size, self.device)
                worlds.append(tgt_grid.index_to_world(result.center_xyz))
                peaks.append(result.peak)
                results.append(result)
            world = np.mean(worlds, axis=0)
            predicted_xyz = tgt_raw.world_to_index(world)
            if self.heatmap_folder is not None:
                self._write_heatmap(pair.pair_id, results, tgt_grid)
            records.append(prediction_record_from_pair(
                pair, predicted_xyz.tolist(), tgt_raw.spacing_xyz, predicted_center_world_xyz=world.tolist(),
                confidence=float(np.mean(peaks)), processing_time_s=shared + time.perf_counter() - t0))
        return records

    def _write_heatmap(self, pair_id: str, results: list, grid: Geometry) -> None:
        heatmap = np.mean([r.heatmap_zyx for r in results], axis=0).astype(np.float32)
        start_xyz = results[0].region_start_zyx[::-1].astype(np.float64)
        origin = grid.index_to_world(start_xyz)
        geometry = Geometry(grid.spacing_xyz, tuple(float(v) for v in origin), grid.direction, heatmap.shape)
        write_image(self.heatmap_folder / f"{pair_id}.nii.gz", heatmap, geometry)
