"""Configuration of Dataset501_SynthLesionTracking: :class:`TrackingConfig` and the dataset's constants.

Shapes and fields of view are given in array order ``(z, y, x)`` (``*_zyx``); lengths are in mm,
intensities in HU. The generator itself is described in :mod:`lesionnet.datasets.synthetic.tracking`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

DATASET_ID = 501
DATASET_NAME = "SynthLesionTracking"
#: the grid for which the spacing ranges of :class:`TrackingConfig` are stated
REFERENCE_SHAPE_ZYX = (48, 112, 112)
ORGANS = ("liver", "lung", "soft_tissue", "spleen")


@dataclass
class TrackingConfig:
    """Every parameter of Dataset501 (defaults in brackets; units in the names or stated).

    Dataset: ``num_patients`` [12], ``test_fraction`` [0.2] of the patients (at least 1) go to
    imagesTs / pairsTs.json; ``timepoints_range`` [2, 4] scans per patient; ``lesions_range`` [3, 6]
    lesions per patient.

    Grid: ``field_of_view_mm_zyx`` [144, 280, 280] is covered by every scan; ``nominal_shape_zyx``
    [48, 112, 112] sets the nominal grid (nominal spacing = field of view / shape = 3 × 2.5 × 2.5 mm).
    Each scan draws its slice thickness from ``slice_thickness_range_mm`` [1, 5] and its in-plane
    spacing from ``inplane_spacing_range_mm`` [2, 3]; these ranges hold for the reference grid
    48 × 112 × 112 and scale by 48 / Z and 112 / Y for another ``nominal_shape_zyx``. The scan's shape
    is then field of view / spacing. ``max_subslice_mm`` [2]: thick slices average sub-slices at most
    this far apart (partial-volume effect); ``psf_sigma_voxels`` [0.5]: in-plane Gaussian blur.

    Anatomy: ``anatomy_scale`` [1.0] multiplies the phantom (body about 220 × 156 mm at 1.0);
    ``edge_mm`` [1.0] is the width of the soft edge of every structure.

    Follow-up motion (each follow-up relative to the baseline; two follow-ups may differ by up to twice
    as much): ``max_rotation_deg`` [10] about a random axis, ``max_translation_mm`` [20],
    ``scale_range`` [0.92, 1.08] per axis, ``nonrigid_displacement_mm`` [8] RMS length of the smooth
    displacement, ``nonrigid_wavelength_mm`` [100] its shortest wavelength, ``nonrigid_modes`` [8]
    Fourier modes.

    Lesions: ``radius_range_mm`` [3, 25] bounds every radius at every time point;
    ``baseline_radius_range_mm`` [3, 15] log-uniform baseline radius; ``growth_range`` [0.5, 1.8]
    radius factor from one time point to the next; ``lesion_drift_mm`` [3] largest canonical motion
    between consecutive time points; ``lesion_organ_weights`` [liver 0.4, lung 0.3, soft tissue 0.2,
    spleen 0.1]; ``lesion_contrast_hu_range`` [35, 80] |lesion − organ| (HU), ``hypodense_fraction``
    [0.6]; ``lung_nodule_hu_range`` [-20, 60] HU of lung nodules; ``contrast_change_range`` [0.7, 1.3]
    factor on the contrast at each follow-up; ``lesion_texture_hu_range`` [3, 12] internal texture;
    ``rim_fraction`` [0.25] lesions with an enhancing rim of ``rim_hu`` [40]; ``necrosis_fraction``
    [0.2] lesions developing a necrotic core of ``necrosis_hu`` [-35] relative HU; ``twin_fraction``
    [0.35] probability that a lesion gets a similar-looking neighbour ``twin_gap_range_mm`` [2, 12]
    (surface to surface) away; ``fov_margin_mm`` [12] minimum distance from a lesion's surface to the
    border of every scan (under the affine part of the motion; keep the non-rigid displacement below it).

    Scanner: ``noise_hu_range`` [8, 16] noise standard deviation at the nominal slice thickness, scaled
    by sqrt(nominal / actual thickness); ``bias_field_hu`` [20] largest smooth additive bias in the body.
    """

    num_patients: int = 32
    test_fraction: float = 0.25
    timepoints_range: tuple = (2, 4)
    lesions_range: tuple = (4, 7)
    field_of_view_mm_zyx: tuple = (160.0, 280.0, 280.0)
    nominal_shape_zyx: tuple = (48, 112, 112)
    slice_thickness_range_mm: tuple = (1.0, 5.0)
    inplane_spacing_range_mm: tuple = (2.0, 3.0)
    max_subslice_mm: float = 2.0
    psf_sigma_voxels: float = 0.5
    anatomy_scale: float = 1.0
    edge_mm: float = 1.0
    max_rotation_deg: float = 10.0
    max_translation_mm: float = 20.0
    scale_range: tuple = (0.92, 1.08)
    nonrigid_displacement_mm: float = 10.0
    nonrigid_wavelength_mm: float = 100.0
    nonrigid_modes: int = 8
    radius_range_mm: tuple = (3.0, 45.0)
    baseline_radius_range_mm: tuple = (5.5, 40.0)
    growth_range: tuple = (0.75, 1.35)
    lesion_drift_mm: float = 3.0
    lesion_organ_weights: dict = field(default_factory=lambda: {"liver": 0.4, "lung": 0.3, "soft_tissue": 0.2,
                                                                 "spleen": 0.1})
    lesion_contrast_hu_range: tuple = (35.0, 80.0)
    hypodense_fraction: float = 0.6
    lung_nodule_hu_range: tuple = (-20.0, 60.0)
    contrast_change_range: tuple = (0.7, 1.3)
    lesion_texture_hu_range: tuple = (3.0, 12.0)
    rim_fraction: float = 0.25
    rim_hu: float = 40.0
    necrosis_fraction: float = 0.2
    necrosis_hu: float = -35.0
    twin_fraction: float = 0.35
    twin_gap_range_mm: tuple = (2.0, 12.0)
    fov_margin_mm: float = 14.0
    noise_hu_range: tuple = (8.0, 16.0)
    bias_field_hu: float = 20.0

    def __post_init__(self):
        unknown = set(self.lesion_organ_weights) - set(ORGANS)
        if unknown:
            raise ValueError(f"lesion_organ_weights: unknown organ(s) {sorted(unknown)}; use {ORGANS}.")
        if self.timepoints_range[0] < 2:
            raise ValueError("timepoints_range must start at 2 or more (a pair needs two scans).")
        if not 0 < self.radius_range_mm[0] <= self.radius_range_mm[1]:
            raise ValueError(f"radius_range_mm must be increasing and positive, got {self.radius_range_mm}.")
        if len(self.nominal_shape_zyx) != 3 or min(self.nominal_shape_zyx) < 8:
            raise ValueError(f"nominal_shape_zyx must be 3 sizes of at least 8 voxels, got {self.nominal_shape_zyx}.")

    @property
    def nominal_spacing_zyx(self) -> tuple:
        """Field of view / nominal shape (mm)."""
        return tuple(f / n for f, n in zip(self.field_of_view_mm_zyx, self.nominal_shape_zyx))

    def spacing_ranges_mm(self) -> tuple:
        """``(slice_thickness_range, inplane_spacing_range)`` in mm for this config's nominal grid."""
        zf = REFERENCE_SHAPE_ZYX[0] / self.nominal_shape_zyx[0]
        yf = REFERENCE_SHAPE_ZYX[1] / self.nominal_shape_zyx[1]
        return (tuple(v * zf for v in self.slice_thickness_range_mm),
                tuple(v * yf for v in self.inplane_spacing_range_mm))

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


__all__ = ["TrackingConfig", "DATASET_ID", "DATASET_NAME", "REFERENCE_SHAPE_ZYX", "ORGANS"]
