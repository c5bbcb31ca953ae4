"""Overlay PNGs: axial, coronal and sagittal slices through a predicted lesion center."""
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
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
