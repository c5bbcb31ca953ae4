"""A Dataset503 patient held in memory: :class:`FollowUpPatient` (ground truth, pairs and rendering).

Coordinates: arrays ``[z, y, x]``; continuous voxel indices ``(z, y, x)`` (``*_zyx``); world and canonical
points physical ``(x, y, z)`` vectors in mm; radii in mm; intensities in HU.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.synthetic import common, shapes
from lesionnet.datasets.synthetic.followup_torso.anatomy import TorsoAnatomy
from lesionnet.datasets.synthetic.followup_torso.anatomy_eval import evaluate_anatomy
from lesionnet.datasets.synthetic.followup_torso.rendering import form_image, sample_scan


@dataclass(frozen=True)
class FollowUpPatient:
    """Anatomy, scans (:class:`~.acquisition.FollowUpScan`) and lesions (:class:`~.lesions.FollowUpLesion`).

    ``render(t)`` gives the image of scan ``t``; ``lesion_center_zyx(t, k)`` / ``lesion_radius_mm(t, k)``
    the truth of lesion ``k`` in scan ``t`` (where ``lesion_in_scan(t, k)``); ``pairs()`` the directed pairs.
    Everything is a pure function of the patient's seed.
    """

    patient_id: str
    anatomy: TorsoAnatomy
    scans: tuple
    lesions: tuple
    edge_mm: float = 1.0

    @property
    def num_timepoints(self) -> int:
        return len(self.scans)

    def scan_id(self, t: int) -> str:
        return self.scans[t].scan_id

    def geometry(self, t: int) -> Geometry:
        return self.scans[t].geometry

    # -------------------------------------------------------------- truth
    def lesion_in_scan(self, t: int, k: int) -> bool:
        """Whether lesion ``k`` lies inside scan ``t`` (with the scan margin); otherwise it is entirely outside."""
        return bool(self.lesions[k].in_scan[t])

    def lesion_center_world(self, t: int, k: int) -> np.ndarray:
        """World point (mm, (x, y, z)) of lesion ``k``'s center in scan ``t``: ``phi_t^{-1}(c)`` by Newton iteration."""
        return self.scans[t].mapping.inverse(self.lesions[k].center_canonical_mm)

    def lesion_center_zyx(self, t: int, k: int) -> np.ndarray:
        """Continuous voxel index (z, y, x) of lesion ``k``'s center in scan ``t``."""
        return self.geometry(t).world_to_voxel(self.lesion_center_world(t, k))

    def lesion_radius_mm(self, t: int, k: int) -> float:
        """Radius of lesion ``k`` in scan ``t`` (world mm): canonical radius / scale of ``phi_t`` (1, rigid pose)."""
        return float(self.lesions[k].radii_mm[t] / self.scans[t].mapping.scale)

    def voxel_to_canonical(self, t: int, index_zyx) -> np.ndarray:
        """Continuous voxel index/indices ``(..., 3)`` (z, y, x) of scan ``t`` → canonical points (mm, (x, y, z))."""
        return self.scans[t].mapping(self.geometry(t).voxel_to_world(index_zyx))

    def canonical_to_voxel(self, t: int, points_canonical_mm) -> np.ndarray:
        """Canonical points (mm, (x, y, z)) → continuous voxel indices ``(..., 3)`` (z, y, x) of scan ``t``."""
        return self.geometry(t).world_to_voxel(self.scans[t].mapping.inverse(points_canonical_mm))

    def transport_voxel(self, index_zyx, source_t: int, target_t: int) -> np.ndarray:
        """Carry a continuous voxel index (z, y, x) of scan ``source_t`` to scan ``target_t`` through canonical space
        (``phi_target^{-1} ∘ phi_source``, the generator's exact correspondence)."""
        return self.canonical_to_voxel(target_t, self.voxel_to_canonical(source_t, index_zyx))

    def pairs(self) -> list:
        """Directed pairs of every lesion between every two scans that both contain it (centers (z, y, x))."""
        return [pair for k, lesion in enumerate(self.lesions)
                for pair in common.directed_lesion_pairs(self, k, [t for t in range(self.num_timepoints)
                                                                   if lesion.in_scan[t]])]

    # -------------------------------------------------------------- rendering
    def render(self, t: int) -> tuple:
        """``(image_zyx, geometry)`` of scan ``t``: float32 HU array of shape ``geometry.shape_zyx``."""
        scan = self.scans[t]
        ideal = sample_scan(scan, lambda x, y, z: self.evaluate(x, y, z, t))
        return form_image(scan, ideal), scan.geometry

    def evaluate(self, x, y, z, t: int) -> np.ndarray:
        """Noise-free HU (float32) of anatomy and lesions at canonical points (1D arrays, mm), time point ``t``."""
        hu, _ = evaluate_anatomy(self.anatomy, x, y, z, self.edge_mm)
        for lesion in self.lesions:
            occupancy, index = lesion.occupancy(x, y, z, t, self.edge_mm)
            if index[0].size:
                rho = lesion.normalised_radius(x[index], y[index], z[index], t)
                hu[index] = shapes.paint(hu[index], occupancy, lesion.look.value(rho, t))
        return hu

    def lesion_occupancy(self, t: int, k: int) -> np.ndarray:
        """Fraction (0..1) of each voxel of scan ``t`` covered by lesion ``k`` (float32 ``[z, y, x]``), sampled like
        the image (same sub-slices), without blur or noise."""
        lesion = self.lesions[k]

        def evaluate(x, y, z):
            out = np.zeros(x.shape, np.float32)
            occupancy, index = lesion.occupancy(x, y, z, t, self.edge_mm)
            out[index] = occupancy
            return out

        return sample_scan(self.scans[t], evaluate)


__all__ = ["FollowUpPatient"]
