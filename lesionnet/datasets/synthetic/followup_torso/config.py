"""Configuration of Dataset503_SynthTorsoFollowUp: :class:`FollowUpTorsoConfig` and the dataset's constants.

Lengths are in mm, angles in degrees, intensities in HU. Canonical space is the patient's body in mm,
physical ``(x, y, z)`` with x → patient's left, y → posterior, z → superior (ITK/DICOM LPS), origin at the
body center; the canonical body is ``body_length_mm`` long (z from -210 to +210 mm by default).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

DATASET_ID = 503
DATASET_NAME = "SynthTorsoFollowUp"
#: organs that can hold a lesion (``lymph_node``: fat next to the aorta)
LESION_ORGANS = ("kidney", "liver", "lung", "lymph_node", "spleen")


@dataclass
class FollowUpTorsoConfig:
    """Every parameter of Dataset503 (defaults in brackets; units in the names or stated).

    Dataset: ``num_patients`` [12], ``test_fraction`` [0.25] of the patients (at least 1) go to
    imagesTs / pairsTs.json; ``timepoints_range`` [2, 4] scans per patient; ``lesions_range`` [3, 6]
    lesions per patient (twins count).

    Anatomy: ``body_width_range_mm`` [280, 360] and ``body_depth_range_mm`` [200, 260] (left–right and
    anterior–posterior size of the body ellipse); ``body_length_mm`` [420] canonical extent along z that
    scans are drawn from; ``organ_size_jitter`` [0.15] relative size variation of every organ (uniform ±);
    ``organ_shift_mm`` [8] position jitter of every organ; ``edge_mm`` [1.0] width of the soft edge of every
    structure and lesion.

    Acquisition (drawn per scan): ``inplane_spacing_range_mm`` [1.3, 1.8] (square pixels);
    ``slice_thickness_range_mm`` [2.5, 5] (slice spacing = thickness); ``fov_range_mm`` [320, 400] in-plane
    field of view, square, so the in-plane shape is FOV / spacing; ``coverage_range_mm`` [180, 280] extent
    along z; a patient's nominal coverage start is drawn from ``coverage_start_range_mm`` [-170, -100]
    (canonical z) and each scan's start is shifted from it by up to ± ``coverage_shift_mm`` [25], so two
    scans of a patient start up to 50 mm apart; ``subslice_spacing_mm`` [2.5]: every slice averages
    ``max(2, ceil(thickness / subslice_spacing_mm))`` sub-slices (partial volume);
    ``psf_fwhm_range_mm`` [1.0, 2.0] in-plane Gaussian blur (full width at half maximum);
    ``noise_hu_range`` [10, 25] noise standard deviation at the body center; ``bias_field_hu`` [12] largest
    smooth additive bias inside the body.

    Motion (each scan has its own, relative to canonical space): rigid pose with a rotation about z
    uniform in ± ``max_rotation_deg`` [6] and tilts about x and y uniform in ± ``max_tilt_deg`` [1.5], an
    in-plane translation uniform in a disk of radius ``max_translation_mm`` [25] and a table shift along z
    uniform in ± ``table_shift_mm`` [20]; breathing: organs near the diaphragm are displaced by a
    breathing depth drawn from ``breathing_range_mm`` [5, 35] (mostly inferior, ``breathing_ap_ratio``
    [0.2] of it anterior), decaying smoothly to zero towards the lung apex, the pelvis, the body wall and
    the spine; a smooth non-rigid displacement (posture, bowel filling) of RMS length ``nonrigid_displacement_mm``
    [6] made of ``nonrigid_modes`` [6] Fourier modes with wavelengths from ``nonrigid_wavelength_mm`` [100] to
    twice that. These magnitudes were set on the training split so that the affine prior is about as wrong
    as on DLS (about half of the lesions within 10 mm).

    Lesions: ``radius_range_mm`` [4, 20] log-uniform baseline radius and bounds of every radius;
    ``growth_range`` [0.6, 1.6] radius factor from one time point to the next; ``lesion_organ_weights``
    [liver 0.35, lung 0.25, lymph node 0.16, kidney 0.12, spleen 0.12]; ``lesion_contrast_hu_range``
    [30, 70] |lesion − organ| at baseline, ``hypodense_fraction`` [0.6]; ``lung_nodule_hu_range``
    [-30, 50] and ``lymph_node_hu_range`` [20, 60] absolute HU at baseline; ``contrast_change_range``
    [0.7, 1.3] factor on the contrast at each follow-up; ``rim_fraction`` [0.25] lesions with an
    enhancing rim of ``rim_hu`` [35]; ``twin_fraction`` [0.3] probability that a lesion gets a
    look-alike neighbour ``twin_gap_range_mm`` [3, 15] away (surface to surface); ``border_lesion_fraction``
    [0.3] of the lesion draws aim at a z border of one scan, half just inside it (surface
    ``scan_margin_mm`` + ``border_gap_range_mm`` [0, 10] from the border), half just outside it;
    ``scan_margin_mm`` [5] least distance from a lesion's surface to the border of every scan that contains
    it (a lesion is either inside a scan with this margin or entirely outside it).
    """

    num_patients: int = 12
    test_fraction: float = 0.25
    timepoints_range: tuple = (2, 4)
    lesions_range: tuple = (3, 6)
    body_width_range_mm: tuple = (280.0, 360.0)
    body_depth_range_mm: tuple = (200.0, 260.0)
    body_length_mm: float = 420.0
    organ_size_jitter: float = 0.15
    organ_shift_mm: float = 8.0
    edge_mm: float = 1.0
    inplane_spacing_range_mm: tuple = (1.3, 1.8)
    slice_thickness_range_mm: tuple = (2.5, 5.0)
    fov_range_mm: tuple = (320.0, 400.0)
    coverage_range_mm: tuple = (180.0, 280.0)
    coverage_start_range_mm: tuple = (-170.0, -100.0)
    coverage_shift_mm: float = 25.0
    subslice_spacing_mm: float = 2.5
    psf_fwhm_range_mm: tuple = (1.0, 2.0)
    noise_hu_range: tuple = (10.0, 25.0)
    bias_field_hu: float = 12.0
    max_rotation_deg: float = 6.0
    max_tilt_deg: float = 1.5
    max_translation_mm: float = 25.0
    table_shift_mm: float = 20.0
    breathing_range_mm: tuple = (5.0, 35.0)
    breathing_ap_ratio: float = 0.2
    nonrigid_displacement_mm: float = 6.0
    nonrigid_wavelength_mm: float = 100.0
    nonrigid_modes: int = 6
    radius_range_mm: tuple = (4.0, 20.0)
    growth_range: tuple = (0.6, 1.6)
    lesion_organ_weights: dict = field(default_factory=lambda: {"liver": 0.35, "lung": 0.25, "lymph_node": 0.16,
                                                                 "kidney": 0.12, "spleen": 0.12})
    lesion_contrast_hu_range: tuple = (30.0, 70.0)
    hypodense_fraction: float = 0.6
    lung_nodule_hu_range: tuple = (-30.0, 50.0)
    lymph_node_hu_range: tuple = (20.0, 60.0)
    contrast_change_range: tuple = (0.7, 1.3)
    rim_fraction: float = 0.25
    rim_hu: float = 35.0
    twin_fraction: float = 0.3
    twin_gap_range_mm: tuple = (3.0, 15.0)
    border_lesion_fraction: float = 0.3
    border_gap_range_mm: tuple = (0.0, 10.0)
    scan_margin_mm: float = 5.0

    def __post_init__(self):
        unknown = set(self.lesion_organ_weights) - set(LESION_ORGANS)
        if unknown:
            raise ValueError(f"lesion_organ_weights: unknown organ(s) {sorted(unknown)}; use {LESION_ORGANS}.")
        if self.timepoints_range[0] < 2:
            raise ValueError("timepoints_range must start at 2 or more (a pair needs two scans).")
        for name in ("radius_range_mm", "inplane_spacing_range_mm", "slice_thickness_range_mm", "fov_range_mm",
                     "coverage_range_mm"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be positive and increasing, got {(low, high)}.")
        half_length = self.body_length_mm / 2.0
        lowest = self.coverage_start_range_mm[0] - self.coverage_shift_mm
        highest = self.coverage_start_range_mm[1] + self.coverage_shift_mm + self.coverage_range_mm[1]
        if lowest < -half_length or highest > half_length:
            raise ValueError(f"scans would leave the canonical body (±{half_length:g} mm along z): narrow "
                             "coverage_start_range_mm or lower coverage_range_mm or coverage_shift_mm.")

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


__all__ = ["FollowUpTorsoConfig", "DATASET_ID", "DATASET_NAME", "LESION_ORGANS"]
