"""Overlay PNGs: axial, coronal and sagittal slices through a predicted lesion center (tracking), and
axial slices through the best-scoring 3D boxes of a scan (detection)."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lesionnet.datasets.geometry import Geometry  # noqa: E402
from lesionnet.utils.files import atomic_path  # noqa: E402

CT_WINDOW_HU = (-160.0, 240.0)  # soft-tissue window (level 40, width 400)


def save_tracking_overlay(path: str | os.PathLike, image_zyx: np.ndarray, geometry: Geometry, predicted_zyx,
                          true_zyx=None, radius_mm: float | None = None, title: str = "") -> None:
    """Save a 1×3 figure of slices through ``predicted_zyx`` (voxel index) of a ``[z, y, x]`` CT volume.

    The prediction is a red cross, the true center (when known) a green circle of ``radius_mm``.
    Pixels are drawn with their physical aspect ratio (spacing from ``geometry``, mm); each view shows
    its in-plane axes (horizontal, vertical) as array axes ``(z, y, x)`` indices.
    """
    sz, sy, sx = geometry.spacing_zyx
    pz, py, px = (int(np.clip(round(v), 0, n - 1)) for v, n in zip(predicted_zyx, geometry.shape_zyx))
    views = [  # (name, 2D slice, the array axes shown horizontally and vertically, their spacings)
        ("axial", image_zyx[pz], (2, 1), (sx, sy)),
        ("coronal", image_zyx[:, py, :], (2, 0), (sx, sz)),
        ("sagittal", image_zyx[:, :, px], (1, 0), (sy, sz)),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    for ax, (name, plane, (h, v), (sh, sv)) in zip(axes, views):
        ax.imshow(plane, cmap="gray", vmin=CT_WINDOW_HU[0], vmax=CT_WINDOW_HU[1], aspect=sv / sh,
                  origin="lower" if name != "axial" else "upper", interpolation="nearest")
        ax.plot(predicted_zyx[h], predicted_zyx[v], "r+", markersize=14, markeredgewidth=2, label="predicted")
        if true_zyx is not None:
            ax.plot(true_zyx[h], true_zyx[v], "o", markersize=5, markerfacecolor="none", markeredgecolor="lime",
                    label="true")
            if radius_mm:
                ax.add_patch(matplotlib.patches.Ellipse((true_zyx[h], true_zyx[v]), 2 * radius_mm / sh,
                                                        2 * radius_mm / sv, fill=False, color="lime", lw=1))
        ax.set_title(name)
        ax.axis("off")
    axes[0].legend(loc="lower right", fontsize=8)
    _save_figure(fig, path, title, dpi=90)


def _save_figure(fig, path, title: str, dpi: int) -> None:
    """Give ``fig`` its title, write it atomically as a PNG and close it."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


def save_detection_overlay(path: str | os.PathLike, image_zyx: np.ndarray, geometry: Geometry, boxes_xyz, scores,
                           max_boxes: int = 12, title: str = "") -> None:
    """Save a grid of axial slices, one per box, through the ``max_boxes`` best-scoring 3D boxes of a scan.

    ``boxes_xyz``: ``(N, 6)`` ``[x1, y1, z1, x2, y2, z2]`` voxel indices of ``image_zyx``'s grid, half open
    (voxel centers on integers, so a box's edges lie at ``x1 - 0.5 .. x2 - 0.5``); ``scores``: ``(N,)``.
    Each panel is the box's middle slice with the box in red (its rank and score in the title) and every
    other box that covers the slice in yellow; pixels keep their physical aspect ratio. A scan without
    boxes gives one panel of its middle slice saying so.
    """
    boxes = np.asarray(boxes_xyz, dtype=np.float64).reshape(-1, 6)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    order = np.argsort(-scores, kind="stable")[:max(1, int(max_boxes))] if len(boxes) else []
    depth = image_zyx.shape[0]
    panels = [(int(np.clip((b[2] + b[5] - 1) // 2, 0, depth - 1)), int(i)) for i, b in
              ((i, boxes[i]) for i in order)] or [(depth // 2, None)]
    columns = min(4, len(panels))
    rows = int(np.ceil(len(panels) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.4 * rows), squeeze=False)
    sz, sy, sx = geometry.spacing_zyx
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (z, focus) in zip(axes.flat, panels):
        ax.imshow(image_zyx[z], cmap="gray", vmin=CT_WINDOW_HU[0], vmax=CT_WINDOW_HU[1], aspect=sy / sx,
                  interpolation="nearest")
        for k, box in enumerate(boxes):
            if not box[2] <= z < box[5]:
                continue
            color, width = ("red", 1.6) if k == focus else ("yellow", 0.8)
            ax.add_patch(matplotlib.patches.Rectangle((box[0] - 0.5, box[1] - 0.5), box[3] - box[0], box[4] - box[1],
                                                      fill=False, edgecolor=color, linewidth=width))
        if focus is None:
            ax.set_title(f"no boxes (slice {z})", fontsize=9)
        else:
            rank = int(np.nonzero(np.asarray(order) == focus)[0][0]) + 1
            ax.set_title(f"#{rank} score {scores[focus]:.2f}, z {z}", fontsize=9)
        ax.axis("off")
    _save_figure(fig, path, title, dpi=80)
