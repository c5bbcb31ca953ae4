"""Registration trackers: the affine baseline and the "unmoved source center" reference.

``affine``: register the source scan (template) to the target scan (search) once per scan pair
(:func:`lesionnet.registration.affine.register_affine`) and map every lesion of that scan pair through
the transform — the prediction is ``T_aff(source_center)``. ``identity``: the source center's world
position, read as a voxel index of the target scan, with no registration (what a tracker gets for
free; a floor any method must beat).

Both return prediction records (:mod:`lesionnet.datasets.prediction_format`). A record's
``processing time`` is its share of the scan pair's registration (registration seconds divided by
the number of lesions of that scan pair) plus its own mapping time, in seconds.
"""
from __future__ import annotations

import time

from lesionnet.datasets.image_io import read_sitk
from lesionnet.datasets.prediction_format import prediction_record_from_pair
from lesionnet.datasets.raw_format import TrackingPair
from lesionnet.inference.tracking_input import TrackingInput
from lesionnet.registration.affine import AffineRegistration, RegistrationSettings, register_affine


def register_scan_pair(tracking_input: TrackingInput, source: str, target: str,
                       settings: RegistrationSettings | None = None) -> AffineRegistration:
    """Register ``source`` (template) to ``target`` (search) of a validated input.

    Raises :class:`lesionnet.datasets.image_io.ImageReadError` when a scan's voxels cannot be read.
    """
    template = read_sitk(tracking_input.scan_paths[source])
    search = read_sitk(tracking_input.scan_paths[target])
    return register_affine(template, search, settings)


class RegistrationTracker:
    """``tracker(tracking_input, pairs) -> records`` for the pairs of one scan pair (all share source and
    target), with the affine registration (``register=True``) or the identity map."""

    def __init__(self, register: bool, settings: RegistrationSettings | None = None):
        self.register = bool(register)
        self.settings = settings
        used = (settings or RegistrationSettings()).to_dict() if register else {}
        self.description = {"registration": used}

    def __call__(self, tracking_input: TrackingInput, pairs: list[TrackingPair]) -> list[dict]:
        source, target = pairs[0].source, pairs[0].target
        if any(p.source != source or p.target != target for p in pairs):
            raise ValueError("a registration tracker needs pairs that share one source and one target scan")
        start = time.perf_counter()
        if self.register:
            registration = register_scan_pair(tracking_input, source, target, self.settings)
        else:
            registration = AffineRegistration.identity()
        shared_seconds = (time.perf_counter() - start) / len(pairs)
        source_geometry = tracking_input.geometries[source]
        target_geometry = tracking_input.geometries[target]
        records = []
        for pair in pairs:
            t0 = time.perf_counter()
            predicted_zyx = registration.map_voxel(pair.source_center_zyx, source_geometry, target_geometry)
            records.append(prediction_record_from_pair(
                pair, predicted_zyx.tolist(), target_geometry.spacing_zyx,
                predicted_center_world=target_geometry.voxel_to_world(predicted_zyx).tolist(),
                processing_time_s=shared_seconds + time.perf_counter() - t0))
        return records


__all__ = ["register_scan_pair", "RegistrationTracker"]
