"""Dataset503_SynthTorsoFollowUp: longitudinal torso scans from an anatomy model and acquisition independent of
Dataset501, to check that registration priors and trackers generalise (nothing is tuned on its test split).

How a patient is made (see ``documentation/synthetic_data.md``):

1. an analytic torso in canonical space (mm): :mod:`.anatomy` (:class:`TorsoAnatomy`, the numbers),
   :mod:`.anatomy_layout` (drawing them), :mod:`.anatomy_eval` (HU and tissue labels at points);
2. 2–4 scans (:mod:`.acquisition`), each with its own spacing, field of view and z-coverage (starts up to
   50 mm apart) and its mapping ``phi_t`` world → canonical (:mod:`.motion`: rigid pose, breathing motion
   of the organs near the diaphragm, a smooth non-rigid field);
3. 3–6 lesions (:mod:`.lesions`, placed by :mod:`.placement`) fixed in canonical space, growing or shrinking,
   each either inside a scan (with a margin) or entirely outside it;
4. rendering (:mod:`.rendering`): anatomy and lesions sampled at ``phi_t(world(voxel))``, sub-slices averaged,
   then blur, bias field and noise;
5. truth: a lesion's center in scan ``t`` is ``phi_t^{-1}(c)`` (Newton iteration, residual < 1e-4 mm, checked
   for every lesion and scan), as a continuous voxel index ``(z, y, x)``.

:mod:`.patient` holds :class:`FollowUpPatient` (truth, pairs, rendering), :mod:`.builder`
:func:`make_followup_patient`, :mod:`.dataset` :func:`generate_followup_dataset`, :mod:`.config`
:class:`FollowUpTorsoConfig`.

Coordinates: arrays ``[z, y, x]``; voxel indices ``(z, y, x)`` (``*_zyx``); world and canonical points are
physical ``(x, y, z)`` in mm; radii in mm; intensities in HU.
"""
from lesionnet.datasets.synthetic.followup_torso.anatomy import TorsoAnatomy
from lesionnet.datasets.synthetic.followup_torso.builder import make_followup_patient
from lesionnet.datasets.synthetic.followup_torso.config import (
    DATASET_ID,
    DATASET_NAME,
    LESION_ORGANS,
    FollowUpTorsoConfig,
)
from lesionnet.datasets.synthetic.followup_torso.dataset import default_output_folder, generate_followup_dataset
from lesionnet.datasets.synthetic.followup_torso.lesions import FollowUpLesion, LesionLook
from lesionnet.datasets.synthetic.followup_torso.patient import FollowUpPatient

__all__ = ["FollowUpTorsoConfig", "FollowUpPatient", "FollowUpLesion", "LesionLook", "TorsoAnatomy",
           "make_followup_patient", "generate_followup_dataset", "default_output_folder", "DATASET_ID",
           "DATASET_NAME", "LESION_ORGANS"]
