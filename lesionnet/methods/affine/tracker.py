"""Registration trackers: the affine and deformable baselines and the "unmoved source center" reference.

``affine`` / ``deformable``: register the source scan (template) to the target scan (search) once per
scan pair (:func:`lesionnet.registration.priors.register_prior` with the kind's settings) and map every
lesion of that scan pair through the transform — the prediction is ``T(source_center)``. ``identity``:
the source center's world position, read as a voxel index of the target scan, with no registration
(what a tracker gets for free; a floor any method must beat).

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
from lesionnet.registration.affine import AffineRegistration
from lesionnet.registration.priors import register_prior


def register_scan_pair(tracking_input: TrackingInput, source: str, target: str, settings):
    """Register ``source`` (template) to ``target`` (search) of a validated input with the prior ``settings`` name.

    Raises :class:`lesionnet.datasets.image_io.ImageReadError` when a scan's voxels cannot be read.
    """
    template = read_sitk(tracking_input.scan_paths[source])
    search = read_sitk(tracking_input.scan_paths[target])
    return register_prior(template, search, settings)


class RegistrationTracker:
    """``tracker(tracking_input, pairs) -> records`` for the pairs of one scan pair (all share source and
    target), with the registration ``settings`` name (affine or deformable), or the identity map (None)."""

    def __init__(self, settings=None):
        self.register = settings is not None
        self.settings = settings
        self.description = {"registration": settings.to_dict() if self.register else {}}

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
