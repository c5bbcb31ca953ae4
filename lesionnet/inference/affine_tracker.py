"""Registration-based trackers: the affine baseline and the "unmoved source center" reference.

``affine``: register the source scan (template) to the target scan (search) once per scan pair
(:func:`lesionnet.registration.affine.register_affine`) and map every lesion of that scan pair through
the transform — the prediction is ``T_aff(source_center)``. ``identity``: the source center's world
position, read as a voxel index of the target scan, with no registration (what a tracker gets for
free; a floor any method must beat).

Both return lesionnet prediction records (``lesionnet.evaluation.prediction_io``). A record's
``processing time`` is its share of the scan pair's registration (registration seconds divided by
the number of lesions of that scan pair) plus its own mapping time, in seconds.
"""
from __future__ import annotations

import time

from lesionnet.datasets.image_io import read_sitk
from lesionnet.datasets.raw_format import TrackingPair
from lesionnet.evaluation.prediction_io import prediction_record_from_pair
from lesionnet.inference.tracking_input import TrackingInput
from lesionnet.registration.affine import (
    AffineRegistration,
    RegistrationSettings,
    register_affine,
)

TRACKING_BASELINES = ("affine", "identity")


def register_scan_pair(tracking_input: TrackingInput, source: str, target: str,
                       settings: RegistrationSettings | None = None) -> AffineRegistration:
    """Register ``source`` (template) to ``target`` (search) of a validated input.

    Raises :class:`lesionnet.datasets.image_io.ImageReadError` when a scan's voxels cannot be read.
    """
    template = read_sitk(tracking_input.scan_paths[source])
    search = read_sitk(tracking_input.scan_paths[target])
    return register_affine(template, search, settings)


def track_scan_pair(tracking_input: TrackingInput, pairs: list[TrackingPair], method: str = "affine",
                    settings: RegistrationSettings | None = None) -> list[dict]:
    """Predict the ``pairs`` of one scan pair (all share source and target) with ``method``.

    Returns one prediction record per pair, in the given order.
    """
    if method not in TRACKING_BASELINES:
        raise ValueError(f"unknown baseline '{method}'; choose one of {TRACKING_BASELINES}")
    source, target = pairs[0].source, pairs[0].target
    if any(p.source != source or p.target != target for p in pairs):
        raise ValueError("track_scan_pair: all pairs must share one source and one target scan")
    start = time.perf_counter()
    if method == "affine":
        registration = register_scan_pair(tracking_input, source, target, settings)
    else:
        registration = AffineRegistration.identity()
    shared_seconds = (time.perf_counter() - start) / len(pairs)
    source_geometry = tracking_input.geometries[source]
    target_geometry = tracking_input.geometries[target]
    records = []
    for pair in pairs:
        t0 = time.perf_counter()
        predicted_xyz = registration.map_index(pair.source_center_xyz, source_geometry, target_geometry)
        records.append(prediction_record_from_pair(
            pair, predicted_xyz.tolist(), target_geometry.spacing_xyz,
            predicted_center_world_xyz=target_geometry.index_to_world(predicted_xyz).tolist(),
            processing_time_s=shared_seconds + time.perf_counter() - t0))
    return records
