"""Figures of an instance mask (0 background, 1..N one lesion each): per-instance size, extent and 3D box,
and the number of instances per slice. Used by the fingerprint and by preprocessing."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def instance_statistics(labels_zyx: np.ndarray, spacing_zyx) -> dict:
    """Per-instance figures of an instance mask ``[z, y, x]`` and per-slice counts.

    Args:
        labels_zyx: integer mask, 0 background, 1..N lesions.
        spacing_zyx: voxel size (mm) in array order.

    Returns ``{"instances": [{"label", "voxels", "radius_mm", "extent_mm_zyx", "extent_voxels_zyx",
    "extent_slices", "box_zyx"}], "per_slice_counts": [count per slice]}``; the radius is the
    equivalent-sphere radius ``(3 V / 4π)^(1/3)``, ``box_zyx`` is ``[z0, y0, x0, z1, y1, x1]``
    (voxels, half-open), ``extent_slices`` the number of slices the instance touches.
    """
    spacing_zyx = np.asarray(spacing_zyx, dtype=np.float64)
    voxel_mm3 = float(np.prod(spacing_zyx))
    ints = np.asarray(labels_zyx).astype(np.int64, copy=False)
    counts = np.bincount(ints.ravel()) if ints.size else np.zeros(1, dtype=np.int64)
    objects = ndimage.find_objects(ints)
    z_idx, _, _ = np.nonzero(ints)
    lab = ints[ints > 0]
    per_slice = np.zeros(ints.shape[0], dtype=np.int64)
    if lab.size:
        pairs = np.unique(np.stack([z_idx, lab], axis=1), axis=0)
        slices_of = np.bincount(pairs[:, 1], minlength=len(counts))
        per_slice = np.bincount(pairs[:, 0], minlength=ints.shape[0])
    else:
        slices_of = np.zeros(len(counts), dtype=np.int64)
    instances = []
    for label, box in enumerate(objects, start=1):
        if box is None:
            continue
        voxels = int(counts[label])
        extent_vox = [int(s.stop - s.start) for s in box]
        instances.append({
            "label": label,
            "voxels": voxels,
            "radius_mm": float((3.0 * voxels * voxel_mm3 / (4.0 * np.pi)) ** (1.0 / 3.0)),
            "extent_mm_zyx": [float(e * s) for e, s in zip(extent_vox, spacing_zyx)],
            "extent_voxels_zyx": extent_vox,
            "extent_slices": int(slices_of[label]),
            "box_zyx": [int(s.start) for s in box] + [int(s.stop) for s in box],
        })
    return {"instances": instances, "per_slice_counts": per_slice.tolist()}
