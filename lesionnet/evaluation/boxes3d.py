"""3D boxes for detection evaluation: boxes of an instance mask, and the 3D IoU of two box sets.

A box is ``[x1, y1, z1, x2, y2, z2]`` in voxel indices of its scan, **half open** (the voxels
``x1 <= x < x2`` etc.): a one-voxel box has size 1 along each axis, and the ground-truth box of an
instance is ``min .. max + 1`` of its voxels' indices. Box arrays are ``(N, 6)`` float64 in that
``(x, y, z)`` order, the order of lesionnet's files; the instance mask is a ``[z, y, x]`` array as
read from the image file, converted here and nowhere else in this package.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from lesionnet.datasets.geometry import zyx_to_xyz


def as_boxes(boxes_xyz, name: str = "boxes_xyz") -> np.ndarray:
    """``boxes_xyz`` as an ``(N, 6)`` float64 array; ValueError unless every box is finite with
    ``x2 > x1``, ``y2 > y1``, ``z2 > z1``."""
    boxes = np.asarray(boxes_xyz, dtype=np.float64)
    if boxes.size == 0:
        return np.zeros((0, 6))
    if boxes.ndim != 2 or boxes.shape[1] != 6:
        raise ValueError(f"{name} must be a list of [x1, y1, z1, x2, y2, z2] boxes, got shape {boxes.shape}")
    if not np.all(np.isfinite(boxes)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(boxes), axis=1))[0])
        raise ValueError(f"{name}[{bad}] is not finite: {boxes[bad].tolist()}")
    empty = np.flatnonzero(np.any(boxes[:, 3:] <= boxes[:, :3], axis=1))
    if empty.size:
        i = int(empty[0])
        raise ValueError(f"{name}[{i}] = {boxes[i].tolist()} is empty: boxes are [x1, y1, z1, x2, y2, z2] "
                         "with x2 > x1, y2 > y1, z2 > z1 (half open, a one-voxel box has size 1)")
    return boxes


def box_iou(boxes_a, boxes_b, ndim: int) -> np.ndarray:
    """``(N, M)`` intersection over union of half-open ``ndim``-D boxes ``(N, 2 ndim)`` and ``(M, 2 ndim)``
    (low corner, then high corner: ``[x1, y1, x2, y2]`` in 2D, ``[x1, y1, z1, x2, y2, z2]`` in 3D)."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 2 * ndim)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 2 * ndim)
    low = np.maximum(a[:, None, :ndim], b[None, :, :ndim])
    high = np.minimum(a[:, None, ndim:], b[None, :, ndim:])
    intersection = np.prod(np.clip(high - low, 0.0, None), axis=2)
    size_a = np.prod(np.clip(a[:, ndim:] - a[:, :ndim], 0.0, None), axis=1)
    size_b = np.prod(np.clip(b[:, ndim:] - b[:, :ndim], 0.0, None), axis=1)
    union = size_a[:, None] + size_b[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def non_maximum_suppression(boxes, scores, iou_threshold: float = 0.5) -> np.ndarray:
    """Indices of the boxes ``(N, 2 ndim)`` (2D or 3D, half open) kept by greedy non-maximum suppression: by
    decreasing score (ties in order), a box is dropped when its IoU with a kept one exceeds ``iou_threshold``."""
    boxes = np.asarray(boxes, dtype=np.float64)
    ndim = boxes.shape[-1] // 2 if boxes.size else 1
    kept: list[int] = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        if not kept or box_iou(boxes[i], boxes[kept], ndim).max() <= iou_threshold:
            kept.append(int(i))
    return np.asarray(kept, dtype=np.int64)


def iou_3d(boxes_a_xyz, boxes_b_xyz) -> np.ndarray:
    """``(N, M)`` 3D intersection over union of ``(N, 6)`` and ``(M, 6)`` half-open boxes."""
    return box_iou(boxes_a_xyz, boxes_b_xyz, 3)


def instance_boxes(instance_mask_zyx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of the instances of a ``[z, y, x]`` mask (0 background, 1..N instances).

    Returns ``(labels (K,), boxes_xyz (K, 6))`` for the K labels present, in increasing label order;
    each box is ``min .. max + 1`` of the instance's voxel indices (half open).
    """
    mask = np.asarray(instance_mask_zyx)
    if mask.ndim != 3:
        raise ValueError(f"an instance mask must be 3D [z, y, x], got {mask.ndim} dimensions")
    if not np.issubdtype(mask.dtype, np.integer):
        rounded = np.rint(mask)
        if not np.array_equal(rounded, mask):
            raise ValueError("an instance mask must hold integer labels (0 background, 1..N instances)")
        mask = rounded.astype(np.int64)
    if mask.size and mask.min() < 0:
        raise ValueError(f"an instance mask must not hold negative labels (found {int(mask.min())})")
    labels, boxes = [], []
    for index, slices in enumerate(ndimage.find_objects(mask), start=1):
        if slices is None:
            continue
        start_zyx = [s.start for s in slices]
        stop_zyx = [s.stop for s in slices]
        labels.append(index)
        boxes.append(list(zyx_to_xyz(start_zyx)) + list(zyx_to_xyz(stop_zyx)))
    return np.asarray(labels, dtype=np.int64), np.asarray(boxes, dtype=np.float64).reshape(-1, 6)


__all__ = ["as_boxes", "box_iou", "non_maximum_suppression", "iou_3d", "instance_boxes"]
