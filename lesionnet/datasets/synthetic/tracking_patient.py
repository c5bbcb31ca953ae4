"""The in-memory model of a Dataset501 patient: lesions, time points, ground truth and rendering.

* :class:`LesionAppearance` — how a lesion looks at each time point (HU);
* :class:`SyntheticLesion` — a lesion's ellipsoid in canonical space (mm) at each time point;
* :class:`TimePoint` — one scan: its grid and the mapping ``phi_t`` world → canonical;
* :class:`SyntheticPatient` — phantom + scans + lesions; gives the exact lesion centers and radii in
  every scan, the directed pairs, and renders each scan (sub-slice averaging, blur, bias field, noise).

The random construction of a patient is in :mod:`lesionnet.datasets.synthetic.tracking_builder`.

Coordinates: arrays are ``[z, y, x]`` and continuous voxel indices ``(z, y, x)`` (``*_zyx``); canonical
and world points are physical ``(x, y, z)`` vectors in mm (``*_canonical_mm``, ``*_world``); lengths in mm,
intensities in HU.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.synthetic import common, shapes
from lesionnet.datasets.synthetic.phantom import TorsoPhantom
from lesionnet.datasets.synthetic.transforms import WorldToCanonical


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

    ``render(t)`` gives the image of time point ``t``; ``lesion_center_zyx(t, k)`` /
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

    def lesion_center_zyx(self, t: int, k: int) -> np.ndarray:
        """Continuous voxel index (z, y, x) of lesion ``k``'s center in scan ``t``."""
        return self.geometry(t).world_to_voxel(self.lesion_center_world(t, k))

    def lesion_radius_mm(self, t: int, k: int) -> float:
        """Radius (mm, world units of scan ``t``) of lesion ``k``."""
        return float(self.lesions[k].radii_mm[t])

    def voxel_to_canonical(self, t: int, index_zyx) -> np.ndarray:
        """Continuous voxel index/indices ``(..., 3)`` (z, y, x) of scan ``t`` → canonical points (mm, (x, y, z))."""
        return self.timepoints[t].mapping(self.geometry(t).voxel_to_world(index_zyx))

    def canonical_to_voxel(self, t: int, points_canonical_mm) -> np.ndarray:
        """Canonical points (mm, (x, y, z)) → continuous voxel indices ``(..., 3)`` (z, y, x) of scan ``t``."""
        return self.geometry(t).world_to_voxel(self.timepoints[t].mapping.inverse(points_canonical_mm))

    def transport_voxel(self, index_zyx, source_t: int, target_t: int, lesion: int | None = None) -> np.ndarray:
        """Carry a continuous voxel index (z, y, x) of scan ``source_t`` to scan ``target_t`` through canonical
        space; returns the (z, y, x) index in scan ``target_t``.

        Without ``lesion`` the point follows the anatomy; with ``lesion=k`` it also follows that
        lesion's own drift, so the center of lesion ``k`` lands exactly on its center in the target.
        """
        canonical = self.voxel_to_canonical(source_t, index_zyx)
        if lesion is not None:
            centers = self.lesions[lesion].centers_canonical_mm
            canonical = canonical + (centers[target_t] - centers[source_t])
        return self.canonical_to_voxel(target_t, canonical)

    def pairs(self) -> list:
        """Directed pairs for every lesion and every ordered pair of distinct time points (centers (z, y, x))."""
        return [pair for k in range(len(self.lesions))
                for pair in common.directed_lesion_pairs(self, k, list(range(self.num_timepoints)))]

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
        if subslice_offsets is None:
            subslice_offsets = (np.arange(tp.subslices) + 0.5) / tp.subslices - 0.5
        return common.sample_subslices(tp.geometry, tp.mapping, evaluate, subslice_offsets, chunk_points)


__all__ = ["LesionAppearance", "SyntheticLesion", "TimePoint", "SyntheticPatient"]
