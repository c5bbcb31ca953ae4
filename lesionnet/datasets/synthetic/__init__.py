"""Built-in synthetic datasets (exact ground truth, small, CPU-friendly).

* Dataset501_SynthLesionTracking — :mod:`.tracking`: longitudinal CT-like torso phantoms with lesions
  (pairs with exact centers); :func:`generate_tracking_dataset`, :func:`make_patient`,
  :func:`make_tracking_pair`.
* Dataset502_SynthLymphNodes — :mod:`.lymph_nodes`: anisotropic crops with lymph-node clusters and
  tube distractors (instance masks); :func:`generate_lymph_node_dataset`, :func:`make_lymph_node_case`.
* Dataset503_SynthTorsoFollowUp — :mod:`.followup_torso`: longitudinal torso scans from another anatomy
  model and acquisition (partial z-coverage, breathing motion), written independently of Dataset501's
  generator to check that registration and trackers generalise; :func:`generate_followup_dataset`,
  :func:`make_followup_patient`.

Command line: ``lesionnet_make_synthetic -d 501|502|503``. See ``documentation/synthetic_data.md``.
"""
from lesionnet.datasets.synthetic.common import (
                                                      DatasetExistsError,
                                                      patient_seed_sequence,
)
from lesionnet.datasets.synthetic.followup_torso import (
                                                      FollowUpPatient,
                                                      FollowUpTorsoConfig,
                                                      generate_followup_dataset,
                                                      make_followup_patient,
)
from lesionnet.datasets.synthetic.lymph_nodes import (
                                                      LymphNodeCase,
                                                      LymphNodeConfig,
                                                      generate_lymph_node_dataset,
                                                      make_lymph_node_case,
)
from lesionnet.datasets.synthetic.tracking import (
                                                      SyntheticPair,
                                                      SyntheticPatient,
                                                      TrackingConfig,
                                                      generate_tracking_dataset,
                                                      make_patient,
                                                      make_tracking_pair,
)

__all__ = [
    "TrackingConfig", "SyntheticPatient", "SyntheticPair", "make_patient", "make_tracking_pair",
    "generate_tracking_dataset",
    "LymphNodeConfig", "LymphNodeCase", "make_lymph_node_case", "generate_lymph_node_dataset",
    "FollowUpTorsoConfig", "FollowUpPatient", "make_followup_patient", "generate_followup_dataset",
    "patient_seed_sequence", "DatasetExistsError",
]
