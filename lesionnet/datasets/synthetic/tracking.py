"""Dataset501_SynthLesionTracking: longitudinal CT-like scans with lesions whose positions are known exactly.

How a patient is made (see ``documentation/synthetic_data.md``):

1. a :class:`~lesionnet.datasets.synthetic.phantom.TorsoPhantom` in canonical space (mm);
2. 2–4 time points; each draws its own voxel spacing and a mapping ``phi_t`` world → canonical
   (identity for the baseline ``T0``; a random affine and a smooth random displacement for follow-ups);
3. 3–6 lesions, ellipsoids defined in canonical space, each with a radius per time point (growth or
   shrinkage), a small drift per time point, and an appearance (contrast, rim, necrosis, texture)
   that changes between time points; some lesions get a similar-looking "twin" next to them;
4. scan ``t`` is rendered by sampling the phantom and the lesions at ``phi_t(world(voxel))``
   (averaging sub-slices across the slice thickness), then blurred in-plane, given a smooth bias field
   and correlated Gaussian noise;
5. a lesion's center in scan ``t`` is ``phi_t^{-1}(c_t)`` (Newton iteration, residual < 1e-6 mm)
   converted to a continuous voxel index by ``Geometry.world_to_index``; its radius in scan ``t`` is
   its canonical radius divided by the scale of ``phi_t``'s affine part (world mm).

Coordinates: arrays are ``[z, y, x]``; centers are continuous voxel indices ``(x, y, z)``; mm everywhere.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
from scipy import ndimage

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.image_io import write_image
from lesionnet.datasets.raw_format import (
    TrackingPair,
    make_dataset_json,
    pair_from_json,
    save_pairs,
)
from lesionnet.datasets.synthetic import common, shapes
from lesionnet.datasets.synthetic import phantom as phantom_module
from lesionnet.datasets.synthetic.phantom import TorsoPhantom
from lesionnet.datasets.synthetic.transforms import (
    AffinePose,
    FourierDisplacement,
    WorldToCanonical,
    random_rotation,
    random_unit_vector,
)
from lesionnet.utils.files import write_json
from lesionnet.utils.parallel import run_jobs

logger = logging.getLogger(__name__)

DATASET_ID = 501
DATASET_NAME = "SynthLesionTracking"
#: the grid for which the spacing ranges of :class:`TrackingConfig` are stated
REFERENCE_SHAPE_ZYX = (48, 112, 112)
ORGANS = ("liver", "lung", "soft_tissue", "spleen")
_ORGAN_TISSUE = {"liver": (phantom_module.LIVER, phantom_module.LIVER_VESSEL),
                 "lung": (phantom_module.LUNG, phantom_module.LUNG_VESSEL),
                 "soft_tissue": (phantom_module.SOFT_TISSUE, phantom_module.VISCERAL_FAT, phantom_module.MUSCLE),
                 "spleen": (phantom_module.SPLEEN,)}
_FORBIDDEN_TISSUE = (phantom_module.AIR, phantom_module.SUBCUTANEOUS_FAT, phantom_module.BONE,
                     phantom_module.AORTA, phantom_module.HEART, phantom_module.STOMACH, phantom_module.KIDNEY)
# random streams of a patient (child seed sequences), so that changing one magnitude (e.g. the
# non-rigid displacement) leaves every other draw unchanged
_STREAM_STRUCTURE, _STREAM_ANATOMY, _STREAM_GRID, _STREAM_POSE, _STREAM_DEFORMATION, _STREAM_LESIONS, \
    _STREAM_NOISE = range(7)


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

    num_patients: int = 12
    test_fraction: float = 0.2
    timepoints_range: tuple = (2, 4)
    lesions_range: tuple = (3, 6)
    field_of_view_mm_zyx: tuple = (144.0, 280.0, 280.0)
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
    nonrigid_displacement_mm: float = 8.0
    nonrigid_wavelength_mm: float = 100.0
    nonrigid_modes: int = 8
    radius_range_mm: tuple = (3.0, 25.0)
    baseline_radius_range_mm: tuple = (3.0, 15.0)
    growth_range: tuple = (0.5, 1.8)
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
    fov_margin_mm: float = 12.0
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


@dataclass(frozen=True)
class LesionAppearance:
    """How a lesion looks at each time point (HU). Arrays of length T are indexed by time point.

    The lesion value at unit-ball coordinates ``u`` (``|u| = 1`` on the surface) is
    ``base_hu + contrast[t] * delta_hu + rim[t] * exp(-((|u| - 0.85) / 0.12)^2)
    + necrosis[t] * [|u| < 0.5] + texture[t] * sum_k sin(W_k · u + phase_k + shift[t, k]) / sqrt(K / 2)``.
    """

    base_hu: float
    delta_hu: float
    contrast: np.ndarray
    rim_hu: np.ndarray
    necrosis_hu: np.ndarray
    texture_hu: np.ndarray
    texture_wave_vectors: np.ndarray
    texture_phases: np.ndarray
    texture_shifts: np.ndarray

    def value(self, u_x, u_y, u_z, rho, t: int) -> np.ndarray:
        """Lesion HU at unit-ball coordinates (arrays) and ``rho = |u|``, time point ``t``."""
        value = np.float32(self.base_hu + self.contrast[t] * self.delta_hu)
        value = value + self.rim_hu[t] * np.exp(-((rho - 0.85) / 0.12) ** 2)
        value = value + self.necrosis_hu[t] * np.clip((0.5 - rho) / 0.1 + 0.5, 0.0, 1.0)
        w = self.texture_wave_vectors
        angles = (np.multiply.outer(u_x, w[:, 0]) + np.multiply.outer(u_y, w[:, 1]) + np.multiply.outer(u_z, w[:, 2])
                  + self.texture_phases + self.texture_shifts[t])
        texture = np.sin(angles).sum(axis=-1) / np.sqrt(len(self.texture_phases) / 2.0)
        return (value + self.texture_hu[t] * texture).astype(np.float32)


@dataclass(frozen=True)
class SyntheticLesion:
    """One lesion of a patient, followed through all T time points.

    Attributes:
        organ: ``liver``, ``lung``, ``soft_tissue`` or ``spleen``.
        centers_canonical_mm: (T, 3) canonical (x, y, z) center at each time point (mm).
        radii_canonical_mm: (T,) equivalent-sphere radius in canonical mm.
        radii_mm: (T,) radius in the world mm of each scan (canonical radius / scale of phi_t), within
            ``radius_range_mm``; this is the ``*_radius_mm`` of the pairs.
        axis_ratios: (3,) semi-axes / radius (geometric mean 1) of the ellipsoid.
        rotation: (3, 3) columns are the ellipsoid's axes in canonical (x, y, z).
        appearance: see :class:`LesionAppearance`.
        twin_of: index of the lesion this one imitates, or None.
    """

    organ: str
    centers_canonical_mm: np.ndarray
    radii_canonical_mm: np.ndarray
    radii_mm: np.ndarray
    axis_ratios: np.ndarray
    rotation: np.ndarray
    appearance: LesionAppearance
    twin_of: int | None = None

    def semi_axes_mm(self, t: int) -> np.ndarray:
        """Canonical semi-axes (mm) at time point ``t``."""
        return self.radii_canonical_mm[t] * self.axis_ratios

    def occupancy(self, x, y, z, t: int, edge_mm: float) -> tuple:
        """``(occupancy, index)`` at canonical points: occupancy of the points ``index`` near the lesion."""
        center = self.centers_canonical_mm[t]
        semi = self.semi_axes_mm(t)
        pad = float(np.max(semi)) + edge_mm
        inside = ((np.abs(x - center[0]) <= pad) & (np.abs(y - center[1]) <= pad) & (np.abs(z - center[2]) <= pad))
        index = np.nonzero(inside)
        if index[0].size == 0:
            return np.zeros(0, np.float32), index
        sd = shapes.ellipsoid_signed_distance(x[index], y[index], z[index], center, semi, self.rotation)
        return shapes.ramp(sd, edge_mm).astype(np.float32), index

    def unit_coordinates(self, x, y, z, t: int) -> tuple:
        """Unit-ball coordinates ``(u_x, u_y, u_z, rho)`` of canonical points (``rho = 1`` on the surface)."""
        d = np.stack([x - self.centers_canonical_mm[t][0], y - self.centers_canonical_mm[t][1],
                      z - self.centers_canonical_mm[t][2]], axis=-1)
        local = d @ self.rotation / self.semi_axes_mm(t)
        return local[..., 0], local[..., 1], local[..., 2], np.linalg.norm(local, axis=-1)


@dataclass(frozen=True)
class TimePoint:
    """One scan of a patient.

    Attributes:
        scan_id: ``{patient}_T{t}``.
        geometry: the scan's grid (axis-aligned, centered on the world origin).
        mapping: ``phi_t``, world (mm) → canonical (mm).
        subslices: sub-slices averaged per slice (partial volume across the slice thickness).
        noise_hu: noise standard deviation (HU).
        noise_seed: seed of this scan's noise (rendering is repeatable and order-independent).
        bias_coefficients_zyx: (3, 3, 3) coarse grid of the smooth additive bias field (HU).
    """

    scan_id: str
    geometry: Geometry
    mapping: WorldToCanonical
    subslices: int
    noise_hu: float
    noise_seed: int
    bias_coefficients_zyx: np.ndarray


@dataclass(frozen=True)
class SyntheticPatient:
    """A patient of Dataset501 held in memory: phantom, scans and lesion truth.

    ``render(t)`` gives the image of time point ``t``; ``lesion_center_xyz(t, k)`` /
    ``lesion_radius_mm(t, k)`` give the truth of lesion ``k`` in scan ``t``; ``pairs()`` the directed
    lesion pairs. Everything is a pure function of the patient's seed.
    """

    patient_id: str
    phantom: TorsoPhantom
    timepoints: tuple
    lesions: tuple
    edge_mm: float = 1.0
    psf_sigma_voxels: float = 0.5

    @property
    def num_timepoints(self) -> int:
        return len(self.timepoints)

    def scan_id(self, t: int) -> str:
        return self.timepoints[t].scan_id

    def geometry(self, t: int) -> Geometry:
        return self.timepoints[t].geometry

    # -------------------------------------------------------------- truth
    def lesion_center_world(self, t: int, k: int) -> np.ndarray:
        """World position (mm, (x, y, z)) of lesion ``k``'s center in scan ``t``: ``phi_t^{-1}(c_t)``."""
        return self.timepoints[t].mapping.inverse(self.lesions[k].centers_canonical_mm[t])

    def lesion_center_xyz(self, t: int, k: int) -> np.ndarray:
        """Continuous voxel index (x, y, z) of lesion ``k``'s center in scan ``t``."""
        return self.geometry(t).world_to_index(self.lesion_center_world(t, k))

    def lesion_radius_mm(self, t: int, k: int) -> float:
        """Radius (mm, world units of scan ``t``) of lesion ``k``."""
        return float(self.lesions[k].radii_mm[t])

    def index_to_canonical(self, t: int, index_xyz) -> np.ndarray:
        """Continuous voxel index/indices ``(..., 3)`` of scan ``t`` → canonical points (mm)."""
        return self.timepoints[t].mapping(self.geometry(t).index_to_world(index_xyz))

    def canonical_to_index(self, t: int, canonical_xyz) -> np.ndarray:
        """Canonical points (mm) → continuous voxel indices ``(..., 3)`` of scan ``t``."""
        return self.geometry(t).world_to_index(self.timepoints[t].mapping.inverse(canonical_xyz))

    def transport_index(self, index_xyz, source_t: int, target_t: int, lesion: int | None = None) -> np.ndarray:
        """Carry a voxel index of scan ``source_t`` to scan ``target_t`` through canonical space.

        Without ``lesion`` the point follows the anatomy; with ``lesion=k`` it also follows that
        lesion's own drift, so the center of lesion ``k`` lands exactly on its center in the target.
        """
        canonical = self.index_to_canonical(source_t, index_xyz)
        if lesion is not None:
            centers = self.lesions[lesion].centers_canonical_mm
            canonical = canonical + (centers[target_t] - centers[source_t])
        return self.canonical_to_index(target_t, canonical)

    def pairs(self) -> list:
        """Directed pairs for every lesion and every ordered pair of distinct time points."""
        pairs = []
        for k in range(len(self.lesions)):
            centers = [self.lesion_center_xyz(t, k) for t in range(self.num_timepoints)]
            for a, b in combinations(range(self.num_timepoints), 2):
                for s, g in ((a, b), (b, a)):
                    pairs.append(TrackingPair(
                        pair_id=f"{self.patient_id}_L{k:02d}_T{s}-T{g}",
                        source=self.scan_id(s), target=self.scan_id(g),
                        source_center_xyz=tuple(float(v) for v in centers[s]),
                        source_radius_mm=self.lesion_radius_mm(s, k),
                        target_center_xyz=tuple(float(v) for v in centers[g]),
                        target_radius_mm=self.lesion_radius_mm(g, k),
                        patient=self.patient_id))
        return pairs

    # -------------------------------------------------------------- rendering
    def render(self, t: int) -> tuple:
        """``(image_zyx, geometry)`` of time point ``t``: float32 HU array of shape ``geometry.shape_zyx``."""
        tp = self.timepoints[t]
        image = self._sample(t, lambda x, y, z: self._evaluate(x, y, z, t))
        if self.psf_sigma_voxels > 0:
            image = ndimage.gaussian_filter(image, (0.0, self.psf_sigma_voxels, self.psf_sigma_voxels))
        body_weight = np.clip((image + 900.0) / 400.0, 0.0, 1.0)
        image += common.smooth_bias_field(image.shape, tp.bias_coefficients_zyx) * body_weight
        image += common.correlated_noise(np.random.default_rng(tp.noise_seed), image.shape, tp.noise_hu)
        return image.astype(np.float32), tp.geometry

    def lesion_occupancy(self, t: int, k: int) -> np.ndarray:
        """Fraction (0..1) of each voxel of scan ``t`` covered by lesion ``k`` (float32, ``[z, y, x]``)."""
        lesion = self.lesions[k]

        def evaluate(x, y, z):
            out = np.zeros(x.shape, np.float32)
            occupancy, index = lesion.occupancy(x, y, z, t, self.edge_mm)
            out[index] = occupancy
            return out

        return self._sample(t, evaluate)

    def lesion_labels(self, t: int) -> np.ndarray:
        """Instance mask of scan ``t`` (uint8 ``[z, y, x]``): ``k + 1`` where a voxel center lies in lesion ``k``."""

        def evaluate(x, y, z):
            labels = np.zeros(x.shape, np.float32)
            for k, lesion in enumerate(self.lesions):
                occupancy, index = lesion.occupancy(x, y, z, t, edge_mm=1e-3)
                labels[index[0][occupancy > 0.5]] = k + 1
            return labels

        return self._sample(t, evaluate, subslice_offsets=(0.0,)).astype(np.uint8)

    def _evaluate(self, x, y, z, t: int) -> np.ndarray:
        hu = self.phantom.evaluate(x, y, z, edge_mm=self.edge_mm)
        for lesion in self.lesions:
            occupancy, index = lesion.occupancy(x, y, z, t, self.edge_mm)
            if index[0].size == 0:
                continue
            u_x, u_y, u_z, rho = lesion.unit_coordinates(x[index], y[index], z[index], t)
            value = lesion.appearance.value(u_x, u_y, u_z, rho, t)
            hu[index] = shapes.paint(hu[index], occupancy, value)
        return hu

    def _sample(self, t: int, evaluate, subslice_offsets=None, chunk_points: int = 300_000) -> np.ndarray:
        """Average ``evaluate(canonical x, y, z)`` over each voxel's sub-slices → float32 ``[z, y, x]``."""
        tp = self.timepoints[t]
        geometry = tp.geometry
        nz, ny, nx = geometry.shape_zyx
        if subslice_offsets is None:
            subslice_offsets = (np.arange(tp.subslices) + 0.5) / tp.subslices - 0.5
        out = np.zeros((nz, ny, nx), dtype=np.float32)
        index_y = np.arange(ny, dtype=np.float32)[None, :, None]
        index_x = np.arange(nx, dtype=np.float32)[None, None, :]
        slices_per_chunk = max(1, chunk_points // (ny * nx))
        for z0 in range(0, nz, slices_per_chunk):
            z_indices = np.arange(z0, min(nz, z0 + slices_per_chunk))
            for offset in subslice_offsets:
                index_z = (z_indices + offset).astype(np.float32)[:, None, None]
                cx, cy, cz = tp.mapping.index_grid_to_canonical(geometry, index_x, index_y, index_z)
                values = evaluate(cx.ravel(), cy.ravel(), cz.ravel())
                out[z_indices] += values.reshape(z_indices.size, ny, nx) / np.float32(len(subslice_offsets))
        return out


# ====================================================================================== building
def make_patient(config: TrackingConfig | None = None, seed=0, patient_id: str = "P0000",
                 num_timepoints: int | None = None) -> SyntheticPatient:
    """Build one patient in memory (nothing is rendered or written yet).

    Args:
        config: generator parameters (default :class:`TrackingConfig`).
        seed: an int or a ``np.random.SeedSequence`` (e.g. :func:`common.patient_seed_sequence`).
        patient_id: used in scan ids (``{patient_id}_T{t}``) and pair ids.
        num_timepoints: force the number of scans (else drawn from ``config.timepoints_range``).

    Every random choice comes from separate streams of ``seed`` (structure, anatomy, grid, pose,
    deformation, lesions, noise), so e.g. changing ``nonrigid_displacement_mm`` changes nothing else.
    """
    config = config or TrackingConfig()
    seed_sequence = common.as_seed_sequence(seed)
    structure_rng = common.child_rng(seed_sequence, _STREAM_STRUCTURE)
    drawn_timepoints = int(structure_rng.integers(config.timepoints_range[0], config.timepoints_range[1] + 1))
    num_lesions = int(structure_rng.integers(config.lesions_range[0], config.lesions_range[1] + 1))
    num_timepoints = int(num_timepoints or drawn_timepoints)
    if num_timepoints < 2:
        raise ValueError("a tracking patient needs at least 2 time points")

    phantom = TorsoPhantom.random(common.child_rng(seed_sequence, _STREAM_ANATOMY), config.anatomy_scale)
    timepoints = _make_timepoints(config, seed_sequence, patient_id, num_timepoints)
    lesions = _place_lesions(config, common.child_rng(seed_sequence, _STREAM_LESIONS), phantom, timepoints,
                             num_lesions)
    patient = SyntheticPatient(patient_id, phantom, tuple(timepoints), tuple(lesions), config.edge_mm,
                               config.psf_sigma_voxels)
    _check_lesions_inside(patient, config)
    return patient


def _make_timepoints(config: TrackingConfig, seed_sequence, patient_id: str, num_timepoints: int) -> list:
    grid_rng = common.child_rng(seed_sequence, _STREAM_GRID)
    pose_rng = common.child_rng(seed_sequence, _STREAM_POSE)
    deformation_rng = common.child_rng(seed_sequence, _STREAM_DEFORMATION)
    noise_rng = common.child_rng(seed_sequence, _STREAM_NOISE)
    thickness_range, inplane_range = config.spacing_ranges_mm()
    nominal_thickness = config.nominal_spacing_zyx[0]
    timepoints = []
    for t in range(num_timepoints):
        thickness = round(float(grid_rng.uniform(*thickness_range)), 3)
        inplane = round(float(grid_rng.uniform(*inplane_range)), 3)
        spacing_zyx = (thickness, inplane, inplane)
        shape_zyx = tuple(max(4, int(round(f / s))) for f, s in zip(config.field_of_view_mm_zyx, spacing_zyx))
        pose = AffinePose.random(pose_rng, config.max_rotation_deg, config.max_translation_mm, config.scale_range)
        displacement = FourierDisplacement.random(deformation_rng, config.nonrigid_displacement_mm,
                                                  config.nonrigid_wavelength_mm, config.nonrigid_modes)
        mapping = WorldToCanonical.identity() if t == 0 else WorldToCanonical(pose, displacement)
        if t > 0 and displacement.lipschitz_bound >= 1.0:
            logger.debug("%s_T%d: non-rigid displacement Lipschitz bound %.2f >= 1; it may fold locally.",
                         patient_id, t, displacement.lipschitz_bound)
        noise_hu = float(noise_rng.uniform(*config.noise_hu_range)) * np.sqrt(nominal_thickness / thickness)
        timepoints.append(TimePoint(
            scan_id=f"{patient_id}_T{t}",
            geometry=common.centered_geometry(shape_zyx, spacing_zyx),
            mapping=mapping,
            subslices=max(1, int(np.ceil(thickness / config.max_subslice_mm - 1e-9))),
            noise_hu=noise_hu,
            noise_seed=int(noise_rng.integers(0, 2 ** 63 - 1)),
            bias_coefficients_zyx=noise_rng.uniform(-1.0, 1.0, size=(3, 3, 3)) * config.bias_field_hu,
        ))
    return timepoints


def _radius_trajectory(rng: np.random.Generator, config: TrackingConfig, num_timepoints: int) -> np.ndarray:
    """World radii (mm) per time point: log-uniform baseline, then a growth factor per step, clipped."""
    low, high = config.radius_range_mm
    radii = [min(max(common.log_uniform(rng, *config.baseline_radius_range_mm), low), high)]
    for _ in range(1, num_timepoints):
        radii.append(float(np.clip(radii[-1] * rng.uniform(*config.growth_range), low, high)))
    return np.asarray(radii)


def _random_appearance(rng: np.random.Generator, config: TrackingConfig, phantom: TorsoPhantom, organ: str,
                       num_timepoints: int) -> LesionAppearance:
    if organ == "lung":
        base = phantom.organs["lung_left"].hu
        delta = float(rng.uniform(*config.lung_nodule_hu_range)) - base
    else:
        base = phantom.organs[organ].hu if organ in phantom.organs else phantom.hu["soft_tissue"]
        sign = -1.0 if rng.uniform() < config.hypodense_fraction else 1.0
        delta = sign * float(rng.uniform(*config.lesion_contrast_hu_range))
    contrast = np.concatenate([[1.0], rng.uniform(*config.contrast_change_range, size=num_timepoints - 1)])
    if organ == "lung":
        contrast = np.minimum(contrast, 1.0)  # nodules may become part-solid, never denser than bone
    has_rim = rng.uniform() < config.rim_fraction
    rim = config.rim_hu * has_rim * rng.uniform(0.5, 1.5, size=num_timepoints)
    has_necrosis = rng.uniform() < config.necrosis_fraction
    necrosis_onset = int(rng.integers(0, num_timepoints)) if has_necrosis else num_timepoints
    necrosis = np.where(np.arange(num_timepoints) >= necrosis_onset, config.necrosis_hu, 0.0)
    texture = rng.uniform(*config.lesion_texture_hu_range) * rng.uniform(0.5, 1.5, size=num_timepoints)
    num_modes = 6
    directions = np.stack([random_unit_vector(rng) for _ in range(num_modes)])
    wave_vectors = directions * rng.uniform(2.0, 5.0, size=(num_modes, 1))
    phases = rng.uniform(0, 2 * np.pi, size=num_modes)
    shifts = np.concatenate([np.zeros((1, num_modes)), rng.uniform(-1.5, 1.5, size=(num_timepoints - 1, num_modes))])
    return LesionAppearance(float(base), float(delta), contrast, rim, necrosis, texture, wave_vectors, phases, shifts)


def _twin_appearance(rng: np.random.Generator, original: LesionAppearance) -> LesionAppearance:
    """A look-alike: same base, contrast within ±15 %, same rim/necrosis pattern, own texture."""
    return dataclasses.replace(
        original,
        delta_hu=original.delta_hu * float(rng.uniform(0.85, 1.15)),
        texture_phases=rng.uniform(0, 2 * np.pi, size=original.texture_phases.shape),
    )


def _place_lesions(config: TrackingConfig, rng: np.random.Generator, phantom: TorsoPhantom, timepoints: list,
                   num_lesions: int, max_attempts: int = 400) -> list:
    """Draw ``num_lesions`` lesions by rejection sampling (organ, inside every scan, no overlap)."""
    num_timepoints = len(timepoints)
    scales = np.array([tp.mapping.pose.scale for tp in timepoints])
    organs = sorted(config.lesion_organ_weights)
    weights = np.array([config.lesion_organ_weights[o] for o in organs], dtype=np.float64)
    weights /= weights.sum()
    lesions: list[SyntheticLesion] = []
    attempts = 0
    while len(lesions) < num_lesions and attempts < max_attempts:
        attempts += 1
        organ = str(rng.choice(organs, p=weights))
        radii_mm = _radius_trajectory(rng, config, num_timepoints)
        center0 = rng.uniform(*phantom.organ_box(organ))
        lesion = _make_lesion(rng, config, phantom, organ, center0, radii_mm, scales, num_timepoints)
        if not _lesion_fits(lesion, phantom, timepoints, lesions, config):
            continue
        lesions.append(lesion)
        if len(lesions) < num_lesions and rng.uniform() < config.twin_fraction:
            twin = _make_twin(rng, config, phantom, lesion, len(lesions) - 1, scales, timepoints, lesions)
            if twin is not None:
                lesions.append(twin)
    if len(lesions) < num_lesions:
        logger.warning("placed only %d of %d lesions after %d attempts", len(lesions), num_lesions, attempts)
    if not lesions:
        raise RuntimeError("no lesion could be placed; enlarge field_of_view_mm_zyx or reduce radius_range_mm.")
    return lesions


def _make_lesion(rng, config, phantom, organ, center0, radii_mm, scales, num_timepoints, appearance=None,
                 twin_of=None) -> SyntheticLesion:
    centers = [np.asarray(center0, dtype=np.float64)]
    for _ in range(1, num_timepoints):
        centers.append(centers[-1] + random_unit_vector(rng) * rng.uniform(0.0, config.lesion_drift_mm))
    axis_ratios = rng.uniform(0.8, 1.2, size=3)
    axis_ratios /= np.prod(axis_ratios) ** (1.0 / 3.0)
    rotation = random_rotation(rng, 180.0)
    if appearance is None:
        appearance = _random_appearance(rng, config, phantom, organ, num_timepoints)
    return SyntheticLesion(organ=organ, centers_canonical_mm=np.stack(centers),
                           radii_canonical_mm=np.asarray(radii_mm) * scales, radii_mm=np.asarray(radii_mm),
                           axis_ratios=axis_ratios, rotation=rotation, appearance=appearance, twin_of=twin_of)


def _make_twin(rng, config, phantom, original: SyntheticLesion, original_index: int, scales, timepoints,
               placed: list, max_attempts: int = 20):
    """A similar lesion in the same organ, ``twin_gap_range_mm`` from ``original``'s surface."""
    num_timepoints = len(timepoints)
    low, high = config.radius_range_mm
    for _ in range(max_attempts):
        ratio = rng.uniform(0.8, 1.25)
        radii_mm = np.clip(original.radii_mm * ratio, low, high)
        r_max = float(np.max(original.radii_canonical_mm) * np.max(original.axis_ratios)
                      + np.max(radii_mm * scales) * 1.25)
        distance = r_max + rng.uniform(*config.twin_gap_range_mm) + 2 * config.lesion_drift_mm
        center0 = original.centers_canonical_mm[0] + random_unit_vector(rng) * distance
        twin = _make_lesion(rng, config, phantom, original.organ, center0, radii_mm, scales, num_timepoints,
                            _twin_appearance(rng, original.appearance), twin_of=original_index)
        if _lesion_fits(twin, phantom, timepoints, placed, config):
            return twin
    return None


_DIRECTIONS = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)
                        if (i, j, k) != (0, 0, 0)], dtype=np.float64)
_DIRECTIONS /= np.linalg.norm(_DIRECTIONS, axis=1, keepdims=True)


def _lesion_fits(lesion: SyntheticLesion, phantom: TorsoPhantom, timepoints: list, placed: list,
                 config: TrackingConfig) -> bool:
    """Organ at the center, mostly inside its organ, clear of bone/air/vessels/other lesions, inside every scan."""
    allowed = _ORGAN_TISSUE[lesion.organ]
    for t in range(len(timepoints)):
        center = lesion.centers_canonical_mm[t]
        reach = float(np.max(lesion.semi_axes_mm(t)))
        points = np.concatenate([center[None], center + 0.5 * reach * _DIRECTIONS, center + reach * _DIRECTIONS])
        _, tissue = phantom.evaluate(points[:, 0], points[:, 1], points[:, 2], with_tissue=True)
        if tissue[0] != allowed[0] or np.isin(tissue, _FORBIDDEN_TISSUE).any():
            return False
        if np.mean(np.isin(tissue, allowed)) < 0.7:
            return False
        for other in placed:
            other_reach = float(np.max(other.semi_axes_mm(t)))
            if np.linalg.norm(other.centers_canonical_mm[t] - center) < reach + other_reach + 2.0:
                return False
        # inside the scan under the affine part of phi_t (the non-rigid part is bounded by the margin)
        tp = timepoints[t]
        index = tp.geometry.world_to_index(tp.mapping.pose.invert(center))
        if common.distance_to_border_mm(tp.geometry, index) < lesion.radii_mm[t] * 1.25 + config.fov_margin_mm:
            return False
    return True


def _check_lesions_inside(patient: SyntheticPatient, config: TrackingConfig) -> None:
    """Warn when the non-rigid displacement pushed a lesion center close to a scan border."""
    for t, tp in enumerate(patient.timepoints):
        for k in range(len(patient.lesions)):
            index = patient.lesion_center_xyz(t, k)
            if common.distance_to_border_mm(tp.geometry, index) < patient.lesion_radius_mm(t, k):
                logger.warning("%s lesion %d lies within its radius of the scan border; lower "
                               "nonrigid_displacement_mm (%.1f) below fov_margin_mm (%.1f).", tp.scan_id, k,
                               config.nonrigid_displacement_mm, config.fov_margin_mm)


# ====================================================================================== in-memory pair
@dataclass(frozen=True)
class SyntheticPair:
    """A single source/target pair rendered in memory (for tests and quick experiments).

    Attributes:
        source_image_zyx, target_image_zyx: float32 HU arrays ``[z, y, x]``.
        source_geometry, target_geometry: their grids.
        pair: the :class:`TrackingPair` (centers are continuous voxel indices (x, y, z), radii in mm).
        patient: the generating :class:`SyntheticPatient` (exact mappings, other lesions).
        lesion_index, source_timepoint, target_timepoint: which lesion and scans.
    """

    source_image_zyx: np.ndarray
    source_geometry: Geometry
    target_image_zyx: np.ndarray
    target_geometry: Geometry
    pair: TrackingPair
    patient: SyntheticPatient
    lesion_index: int
    source_timepoint: int
    target_timepoint: int


def make_tracking_pair(config: TrackingConfig | None = None, seed=0, lesion_index: int = 0,
                       source_timepoint: int = 0, target_timepoint: int = 1,
                       patient_id: str = "P0000") -> SyntheticPair:
    """Render one directed pair of one synthetic patient without writing files.

    The patient is built with at least ``max(source, target) + 1`` time points. For the same ``seed``,
    configs that differ only in motion magnitudes (e.g. ``nonrigid_displacement_mm``) give the same
    anatomy, lesions, spacings and noise — only the motion changes.
    """
    num_timepoints = max(2, source_timepoint + 1, target_timepoint + 1)
    patient = make_patient(config, seed, patient_id, num_timepoints=num_timepoints)
    lesion_index = lesion_index % len(patient.lesions)
    source_image, source_geometry = patient.render(source_timepoint)
    target_image, target_geometry = patient.render(target_timepoint)
    pair_id = f"{patient_id}_L{lesion_index:02d}_T{source_timepoint}-T{target_timepoint}"
    pair = next(p for p in patient.pairs() if p.pair_id == pair_id)
    return SyntheticPair(source_image, source_geometry, target_image, target_geometry, pair, patient,
                         lesion_index, source_timepoint, target_timepoint)


# ====================================================================================== dataset
def _generate_patient(args) -> dict:
    """Worker: build, render and write one patient; return its pairs (JSON records) and scan ids."""
    config, seed, patient_index, split, staging = args
    patient_id = f"P{patient_index:04d}"
    patient = make_patient(config, common.patient_seed_sequence(seed, patient_index), patient_id)
    images_dir = Path(staging) / f"images{split}"
    for t in range(patient.num_timepoints):
        image, geometry = patient.render(t)
        write_image(images_dir / f"{patient.scan_id(t)}_0000.nii.gz", common.to_int16_hu(image), geometry)
    return {"patient_id": patient_id, "split": split,
            "scan_ids": [patient.scan_id(t) for t in range(patient.num_timepoints)],
            "pairs": [p.to_json() for p in patient.pairs()],
            "num_lesions": len(patient.lesions)}


def default_output_folder() -> Path:
    """``$lesionnet_raw/Dataset501_SynthLesionTracking``."""
    from lesionnet import paths
    from lesionnet.datasets.dataset_id import dataset_folder_name
    return paths.raw_dir() / dataset_folder_name(DATASET_ID, DATASET_NAME)


def generate_tracking_dataset(output_folder=None, config: TrackingConfig | None = None, seed: int = 0,
                              overwrite: bool = False, num_processes: int = 1, progress: bool = True) -> dict:
    """Write Dataset501 in the raw format and return a summary.

    Args:
        output_folder: dataset folder to create (default ``$lesionnet_raw/Dataset501_SynthLesionTracking``).
        config: generator parameters (default :class:`TrackingConfig`).
        seed: run seed; patient ``i`` uses ``SeedSequence(seed).spawn(n)[i]``, so the data do not depend
            on ``num_processes``.
        overwrite: replace an existing folder (only after the new one is complete); otherwise an
            existing folder raises :class:`common.DatasetExistsError`.
        num_processes: worker processes (1: in this process).
        progress: show a tqdm bar over patients.

    Writes ``dataset.json`` (with the config and seed under ``generator``), ``imagesTr/``, ``imagesTs/``,
    ``pairsTr.json`` and ``pairsTs.json``. Returns ``{"folder", "num_scans_tr", "num_scans_ts",
    "num_pairs_tr", "num_pairs_ts", "patients_tr", "patients_ts"}``.
    """
    config = config or TrackingConfig()
    output_folder = Path(output_folder) if output_folder is not None else default_output_folder()
    num_test = common.num_test_cases(config.num_patients, config.test_fraction)
    if num_test == 0:
        logger.warning("only %d patient(s): no test split is written.", config.num_patients)
    splits = ["Tr"] * (config.num_patients - num_test) + ["Ts"] * num_test
    logger.info("Generating %s with %d patients (%d test), seed %d, nominal grid %s into %s",
                DATASET_NAME, config.num_patients, num_test, seed, tuple(config.nominal_shape_zyx), output_folder)
    with common.staged_output_folder(output_folder, overwrite) as staging:
        jobs = [(config, seed, i, splits[i], str(staging)) for i in range(config.num_patients)]
        results = run_jobs(_generate_patient, jobs, num_processes, progress, f"Dataset{DATASET_ID} patients")
        results.sort(key=lambda r: r["patient_id"])
        summary = _write_tracking_metadata(staging, results, config, seed)
    summary["folder"] = str(output_folder)
    logger.info("Wrote %s: %d/%d scans and %d/%d pairs (train/test)", output_folder, summary["num_scans_tr"],
                summary["num_scans_ts"], summary["num_pairs_tr"], summary["num_pairs_ts"])
    return summary


def _write_tracking_metadata(folder: Path, results: list, config: TrackingConfig, seed: int) -> dict:
    summary = {}
    for split in ("Tr", "Ts"):
        chosen = [r for r in results if r["split"] == split]
        pairs = [p for r in chosen for p in r["pairs"]]
        save_pairs(folder / f"pairs{split}.json", [_pair(p) for p in pairs])
        (folder / f"images{split}").mkdir(exist_ok=True)
        summary[f"num_scans_{split.lower()}"] = sum(len(r["scan_ids"]) for r in chosen)
        summary[f"num_pairs_{split.lower()}"] = len(pairs)
        summary[f"patients_{split.lower()}"] = [r["patient_id"] for r in chosen]
    meta = make_dataset_json(
        DATASET_NAME, "tracking", summary["num_scans_tr"],
        description=("Synthetic longitudinal CT-like torso phantoms (lower thorax / upper abdomen) with lesions "
                     "in liver, lungs, spleen and soft tissue; follow-ups differ by a random affine motion, a "
                     "smooth non-rigid deformation, lesion growth and appearance change, voxel spacing and slice "
                     "thickness. Lesion centers are exact (derived from the generator). Intensities in HU, int16."),
        licence=common.LICENCE,
        numTest=summary["num_scans_ts"],
        numPairsTr=summary["num_pairs_tr"],
        numPairsTs=summary["num_pairs_ts"],
        patientsTr=summary["patients_tr"],
        patientsTs=summary["patients_ts"],
        generator={"function": "lesionnet.datasets.synthetic.tracking.generate_tracking_dataset",
                   "seed": int(seed), "config": config.to_json()},
    )
    write_json(folder / "dataset.json", meta)
    return summary


def _pair(record: dict) -> TrackingPair:
    return pair_from_json(record, "generated pair")


__all__ = ["TrackingConfig", "SyntheticPatient", "SyntheticLesion", "LesionAppearance", "TimePoint",
           "SyntheticPair", "make_patient", "make_tracking_pair", "generate_tracking_dataset",
           "default_output_folder", "DATASET_ID", "DATASET_NAME"]
