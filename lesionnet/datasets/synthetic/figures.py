"""Figures of the synthetic datasets for the documentation (matplotlib, Agg backend).

``render_tracking_figure`` draws a source and a target scan of one Dataset501 pair (axial and coronal
slices through each lesion center, the center marked and the radius drawn); ``render_lymph_node_figure``
draws axial slices and a coronal slice of a Dataset502 case with its instance mask outlined. Both
generate the data with the real generators, in memory.
"""
from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lesionnet.datasets.geometry import xyz_to_zyx  # noqa: E402

logger = logging.getLogger(__name__)

SOFT_TISSUE_WINDOW = (-160.0, 240.0)   # HU, level 40 / width 400
LUNG_WINDOW = (-1200.0, 300.0)         # HU, level -450 / width 1500


def _choose_pair(patient):
    """The lesion with the largest baseline radius among liver / lung lesions, else lesion 0."""
    candidates = [k for k, lesion in enumerate(patient.lesions) if lesion.organ in ("liver", "lung", "spleen")]
    candidates = candidates or list(range(len(patient.lesions)))
    return max(candidates, key=lambda k: patient.lesions[k].radii_mm[0])


def _draw_scan(axes_axial, axes_coronal, image_zyx, geometry, center_xyz, radius_mm, window, title,
               other_centers_xyz=()):
    """Axial slice through ``center_xyz`` and coronal slice through its row, with the lesion marked."""
    spacing_z, spacing_y, spacing_x = geometry.spacing_zyx
    cz, cy, cx = xyz_to_zyx(center_xyz)
    z_index = int(np.clip(round(cz), 0, image_zyx.shape[0] - 1))
    y_index = int(np.clip(round(cy), 0, image_zyx.shape[1] - 1))
    axes_axial.imshow(image_zyx[z_index], cmap="gray", vmin=window[0], vmax=window[1],
                      aspect=spacing_y / spacing_x, interpolation="nearest")
    axes_coronal.imshow(image_zyx[:, y_index, :], cmap="gray", vmin=window[0], vmax=window[1],
                        aspect=spacing_z / spacing_x, origin="lower", interpolation="nearest")
    for (ox, oy, oz) in other_centers_xyz:
        if abs(oz - cz) * spacing_z < 6.0:
            axes_axial.plot(ox, oy, marker="x", color="deepskyblue", markersize=6, mew=1.5)
    axes_axial.add_patch(matplotlib.patches.Ellipse((cx, cy), 2 * radius_mm / spacing_x, 2 * radius_mm / spacing_y,
                                                    fill=False, color="red", lw=1.2))
    axes_axial.plot(cx, cy, marker="+", color="red", markersize=10, mew=1.5)
    axes_coronal.add_patch(matplotlib.patches.Ellipse((cx, cz), 2 * radius_mm / spacing_x,
                                                      2 * radius_mm / spacing_z, fill=False, color="red", lw=1.2))
    axes_coronal.plot(cx, cz, marker="+", color="red", markersize=10, mew=1.5)
    spacing_text = f"{spacing_x:.2f}×{spacing_y:.2f}×{spacing_z:.2f} mm"
    axes_axial.set_title(f"{title}\naxial z={z_index}, {spacing_text}", fontsize=9)
    axes_coronal.set_title(f"coronal y={y_index} (superior up)", fontsize=9)
    for ax in (axes_axial, axes_coronal):
        ax.set_xticks([])
        ax.set_yticks([])


def render_tracking_figure(path, seed: int = 0, config=None, patient_index: int = 0) -> Path:
    """Write a PNG of one Dataset501 pair (source T0 and target T1) to ``path``; return the path."""
    from lesionnet.datasets.synthetic import common
    from lesionnet.datasets.synthetic.tracking import make_patient

    patient = make_patient(config, common.patient_seed_sequence(seed, patient_index), f"P{patient_index:04d}")
    k = _choose_pair(patient)
    window = LUNG_WINDOW if patient.lesions[k].organ == "lung" else SOFT_TISSUE_WINDOW
    fig, axes = plt.subplots(2, 2, figsize=(9, 8.5))
    for column, t in enumerate((0, 1)):
        image, geometry = patient.render(t)
        others = [patient.lesion_center_xyz(t, j) for j in range(len(patient.lesions)) if j != k]
        _draw_scan(axes[0, column], axes[1, column], image, geometry, patient.lesion_center_xyz(t, k),
                   patient.lesion_radius_mm(t, k), window,
                   f"{'source' if t == 0 else 'target'} {patient.scan_id(t)}: lesion {k} ({patient.lesions[k].organ}), "
                   f"r = {patient.lesion_radius_mm(t, k):.1f} mm", others)
    fig.suptitle("Dataset501_SynthLesionTracking: red = lesion center and radius (ground truth), "
                 "blue x = other lesions nearby", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def render_lymph_node_figure(path, seed: int = 0, config=None, case_index: int = 0, num_axial: int = 4) -> Path:
    """Write a PNG of one Dataset502 case: axial slices and a coronal slice with instance outlines."""
    from lesionnet.datasets.synthetic import common
    from lesionnet.datasets.synthetic.lymph_nodes import make_lymph_node_case

    case = make_lymph_node_case(config, common.patient_seed_sequence(seed, case_index), f"LN{case_index:04d}")
    image, labels, geometry = case.image_zyx, case.labels_zyx, case.geometry
    spacing_z, spacing_y, spacing_x = geometry.spacing_zyx
    slice_areas = (labels > 0).sum(axis=(1, 2))
    labelled = np.nonzero(slice_areas)[0]
    if labelled.size:
        slices = np.unique(np.linspace(labelled[0], labelled[-1], num_axial).round().astype(int))
    else:
        slices = np.linspace(0, image.shape[0] - 1, num_axial).round().astype(int)
    fig, axes = plt.subplots(1, len(slices) + 1, figsize=(3.3 * (len(slices) + 1), 4.2))
    colors = plt.get_cmap("tab10")
    for ax, z in zip(axes, slices):
        ax.imshow(image[z], cmap="gray", vmin=-200, vmax=200, aspect=spacing_y / spacing_x, interpolation="nearest")
        _outline(ax, labels[z], colors)
        ax.set_title(f"axial z={z} ({int(len(np.unique(labels[z])) - 1)} nodes)", fontsize=9)
    # coronal slice through the row with the most labelled voxels
    row = int(np.argmax((labels > 0).sum(axis=(0, 2))))
    ax = axes[-1]
    ax.imshow(image[:, row, :], cmap="gray", vmin=-200, vmax=200, aspect=spacing_z / spacing_x, origin="lower",
              interpolation="nearest")
    _outline(ax, labels[:, row, :], colors)
    ax.set_title(f"coronal y={row} (superior up)", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Dataset502_SynthLymphNodes {case.case_id}: {case.num_nodes} nodes outlined (instance mask), "
                 f"{spacing_x:.2f}×{spacing_y:.2f}×{spacing_z:.2f} mm; tubes = vessels (distractors)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _outline(ax, labels_2d: np.ndarray, colors) -> None:
    for label in np.unique(labels_2d):
        if label == 0:
            continue
        ax.contour((labels_2d == label).astype(float), levels=[0.5], colors=[colors(int(label) % 10)], linewidths=1.0)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from lesionnet.utils.files import atomic_path
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    logger.info("Wrote %s", path)
    return path
