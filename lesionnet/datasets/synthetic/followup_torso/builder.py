"""Random construction of a Dataset503 patient: :func:`make_followup_patient`.

From a seed: the anatomy (:func:`.anatomy_layout.draw_anatomy`), the scans with their grids, coverage and
mappings (:func:`.acquisition.draw_scans`) and the lesions (:func:`.placement.place_lesions`). Every kind of
draw has its own random stream of the patient's seed sequence, so e.g. changing the breathing range
changes only the breathing.
"""
from __future__ import annotations

import logging

import numpy as np

from lesionnet.datasets.synthetic import common
from lesionnet.datasets.synthetic.followup_torso.acquisition import draw_scans
from lesionnet.datasets.synthetic.followup_torso.anatomy_layout import draw_anatomy
from lesionnet.datasets.synthetic.followup_torso.config import FollowUpTorsoConfig
from lesionnet.datasets.synthetic.followup_torso.patient import FollowUpPatient
from lesionnet.datasets.synthetic.followup_torso.placement import place_lesions

logger = logging.getLogger(__name__)

#: random streams of a patient (child seed sequences)
_STREAMS = ("structure", "anatomy", "grid", "pose", "breathing", "deformation", "lesions", "noise")


def make_followup_patient(config: FollowUpTorsoConfig | None = None, seed=0, patient_id: str = "P0000",
                          num_timepoints: int | None = None) -> FollowUpPatient:
    """Build one patient in memory (nothing is rendered yet).

    Args:
        config: generator parameters (default :class:`FollowUpTorsoConfig`).
        seed: an int or a ``np.random.SeedSequence`` (patient ``i`` of a dataset seeded ``s`` uses
            ``common.patient_seed_sequence(s, i)``).
        patient_id: used in scan ids (``{patient_id}_T{t}``) and pair ids.
        num_timepoints: force the number of scans (else drawn from ``config.timepoints_range``).
    """
    config = config or FollowUpTorsoConfig()
    seed_sequence = common.as_seed_sequence(seed)
    rngs = {name: common.child_rng(seed_sequence, i) for i, name in enumerate(_STREAMS)}
    drawn_timepoints = int(rngs["structure"].integers(config.timepoints_range[0], config.timepoints_range[1] + 1))
    num_lesions = int(rngs["structure"].integers(config.lesions_range[0], config.lesions_range[1] + 1))
    num_timepoints = int(num_timepoints or drawn_timepoints)
    if num_timepoints < 2:
        raise ValueError("a follow-up patient needs at least 2 time points")
    anatomy = draw_anatomy(rngs["anatomy"], config)
    scans = draw_scans(config, anatomy, patient_id, num_timepoints, rngs)
    lesions = place_lesions(config, rngs["lesions"], anatomy, scans, num_lesions)
    patient = FollowUpPatient(patient_id, anatomy, tuple(scans), tuple(lesions), config.edge_mm)
    _check_truth(patient)
    return patient


def _check_truth(patient: FollowUpPatient) -> None:
    """Every lesion center maps back onto itself through ``phi_t`` (residual < 1e-4 mm) and lies in the scans
    that contain it."""
    for t, scan in enumerate(patient.scans):
        for k, lesion in enumerate(patient.lesions):
            world = patient.lesion_center_world(t, k)
            residual = float(np.max(np.abs(scan.mapping(world) - lesion.center_canonical_mm)))
            if residual >= 1e-4:
                raise RuntimeError(f"{scan.scan_id}: lesion {k} center residual {residual:.3g} mm")
            if lesion.in_scan[t] and not scan.geometry.contains_voxel(patient.lesion_center_zyx(t, k), margin=0.0):
                raise RuntimeError(f"{scan.scan_id}: lesion {k} is marked inside but its center is not")
    logger.debug("%s: %d scans, %d lesions, %d pairs", patient.patient_id, patient.num_timepoints,
                 len(patient.lesions), len(patient.pairs()))


__all__ = ["make_followup_patient"]
