"""Figures of the synthetic datasets for the documentation (matplotlib, Agg backend).

``render_tracking_figure`` draws a source and a target scan of one Dataset501 pair (axial and coronal
slices through each lesion center, the center marked and the radius drawn), ``render_followup_figure`` the same
for a Dataset503 pair; ``render_lymph_node_figure``
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

logger = logging.getLogger(__name__)

SOFT_TISSUE_WINDOW = (-160.0, 240.0)   # HU, level 40 / width 400
LUNG_WINDOW = (-1200.0, 300.0)         # HU, level -450 / width 1500
# saturated colours only (no grey), so every outline stands out on a CT slice
OUTLINE_COLORS = ("red", "lime", "cyan", "yellow", "magenta", "orange", "deepskyblue", "springgreen", "violet", "gold")


def _choose_pair(patient):
    """The lesion with the largest baseline radius among liver / lung lesions, else lesion 0."""
    candidates = [k for k, lesion in enumerate(patient.lesions) if lesion.organ in ("liver", "lung", "spleen")]
    candidates = candidates or list(range(len(patient.lesions)))
    return max(candidates, key=lambda k: patient.lesions[k].radii_mm[0])


def _draw_scan(axes_axial, axes_coronal, axes_zoom, image_zyx, geometry, center_zyx, radius_mm, window, title,
               other_centers_zyx=(), zoom_mm: float = 40.0):
    """Axial slice through ``center_zyx`` (continuous voxel index (z, y, x)), coronal slice through its row,
    and a zoomed axial crop.

    The full views mark the lesion with a dashed circle of 1.6 × its radius (so the lesion itself stays
    visible); the zoomed crop draws the true radius and a dot at the center.
    """
    spacing_z, spacing_y, spacing_x = geometry.spacing_zyx
    cz, cy, cx = center_zyx
    z_index = int(np.clip(round(cz), 0, image_zyx.shape[0] - 1))
    y_index = int(np.clip(round(cy), 0, image_zyx.shape[1] - 1))
    show = dict(cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest")
    axes_axial.imshow(image_zyx[z_index], aspect=spacing_y / spacing_x, **show)
    axes_coronal.imshow(image_zyx[:, y_index, :], aspect=spacing_z / spacing_x, origin="lower", **show)
    axes_zoom.imshow(image_zyx[z_index], aspect=spacing_y / spacing_x, **show)
    for (oz, oy, ox) in other_centers_zyx:
        if abs(oz - cz) * spacing_z < 6.0:
            axes_axial.plot(ox, oy, marker="x", color="deepskyblue", markersize=6, mew=1.5)
    ring = dict(fill=False, color="red", lw=1.2, ls="--")
    axes_axial.add_patch(matplotlib.patches.Ellipse((cx, cy), 3.2 * radius_mm / spacing_x, 3.2 * radius_mm / spacing_y,
                                                    **ring))
    axes_coronal.add_patch(matplotlib.patches.Ellipse((cx, cz), 3.2 * radius_mm / spacing_x,
                                                      3.2 * radius_mm / spacing_z, **ring))
    axes_zoom.add_patch(matplotlib.patches.Ellipse((cx, cy), 2 * radius_mm / spacing_x, 2 * radius_mm / spacing_y,
                                                   fill=False, color="red", lw=0.8))
    axes_zoom.plot(cx, cy, marker="o", color="red", markersize=2.5)
    axes_zoom.set_xlim(cx - zoom_mm / spacing_x, cx + zoom_mm / spacing_x)
    axes_zoom.set_ylim(cy + zoom_mm / spacing_y, cy - zoom_mm / spacing_y)
    spacing_text = f"{spacing_x:.2f}×{spacing_y:.2f}×{spacing_z:.2f} mm"
    axes_axial.set_title(f"{title}\naxial z={z_index}, {spacing_text}", fontsize=9)
    axes_coronal.set_title(f"coronal y={y_index} (superior up)", fontsize=9)
    axes_zoom.set_title(f"axial, ±{zoom_mm:.0f} mm around the center (circle = radius)", fontsize=9)
    for ax in (axes_axial, axes_coronal, axes_zoom):
        ax.set_xticks([])
        ax.set_yticks([])


def render_tracking_figure(path, seed: int = 0, config=None, patient_index: int = 0) -> Path:
    """Write a PNG of one Dataset501 pair (source T0 and target T1) to ``path``; return the path."""
    from lesionnet.datasets.synthetic import common
    from lesionnet.datasets.synthetic.tracking import make_patient

    patient = make_patient(config, common.patient_seed_sequence(seed, patient_index), f"P{patient_index:04d}")
    k = _choose_pair(patient)
    window = LUNG_WINDOW if patient.lesions[k].organ == "lung" else SOFT_TISSUE_WINDOW
    fig, axes = plt.subplots(3, 2, figsize=(9, 12.5), gridspec_kw={"height_ratios": [1.0, 0.62, 0.8]})
    for column, t in enumerate((0, 1)):
        image, geometry = patient.render(t)
        others = [patient.lesion_center_zyx(t, j) for j in range(len(patient.lesions)) if j != k]
        _draw_scan(axes[0, column], axes[1, column], axes[2, column], image, geometry,
                   patient.lesion_center_zyx(t, k), patient.lesion_radius_mm(t, k), window,
                   f"{'source' if t == 0 else 'target'} {patient.scan_id(t)}: lesion {k} ({patient.lesions[k].organ}), "
                   f"r = {patient.lesion_radius_mm(t, k):.1f} mm", others)
    fig.suptitle("Dataset501_SynthLesionTracking, one pair: dashed red = 1.6 × radius around the true center, "
                 "blue x = other lesions", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def render_followup_figure(path, seed: int = 0, config=None, patient_index: int = 0) -> Path:
    """Write a PNG of one Dataset503 pair (the largest lesion found in two scans) to ``path``; return the path."""
    from lesionnet.datasets.synthetic import common
    from lesionnet.datasets.synthetic.followup_torso import make_followup_patient

    patient = make_followup_patient(config, common.patient_seed_sequence(seed, patient_index), f"P{patient_index:04d}")
    pair = max(patient.pairs(), key=lambda p: p.source_radius_mm + p.target_radius_mm)
    k = int(pair.pair_id.split("_L")[1].split("_")[0])
    window = LUNG_WINDOW if patient.lesions[k].organ == "lung" else SOFT_TISSUE_WINDOW
    scan_index = {patient.scan_id(t): t for t in range(patient.num_timepoints)}
    fig, axes = plt.subplots(3, 2, figsize=(9, 12.5), gridspec_kw={"height_ratios": [1.0, 0.8, 0.8]})
    for column, (role, scan) in enumerate((("source", pair.source), ("target", pair.target))):
        t = scan_index[scan]
        image, geometry = patient.render(t)
        others = [patient.lesion_center_zyx(t, j) for j in range(len(patient.lesions))
                  if j != k and patient.lesion_in_scan(t, j)]
        low, high = patient.scans[t].coverage_mm
        radius = patient.lesion_radius_mm(t, k)
        depth = patient.scans[t].mapping.breathing.depth_mm
        _draw_scan(axes[0, column], axes[1, column], axes[2, column], image, geometry,
                   patient.lesion_center_zyx(t, k), radius, window,
                   f"{role} {scan}: lesion {k} ({patient.lesions[k].organ}), r = {radius:.1f} mm\n"
                   f"body z {low:.0f}…{high:.0f} mm, breathing {depth:.0f} mm", others)
    fig.suptitle("Dataset503_SynthTorsoFollowUp, one pair: dashed red = 1.6 × radius around the true center, "
                 "blue x = other lesions", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def render_lymph_node_figure(path, seed: int = 0, config=None, case_index: int = 0, num_axial: int = 4) -> Path:
    """Write a PNG of one Dataset502 case: axial slices and a coronal slice with instance outlines."""
    from lesionnet.datasets.synthetic import common
    from lesionnet.datasets.synthetic.lymph_nodes import make_lymph_node_case

    case = make_lymph_node_case(config, common.patient_seed_sequence(seed, case_index), f"LN{case_index:04d}")
    image, labels, geometry = case.image_zyx, case.labels_zyx, case.geometry
    spacing_z, spacing_y, spacing_x = geometry.spacing_zyx
    # the axial slices showing the most nodes (ties: more labelled voxels), in z order
    nodes_per_slice = np.array([len(np.unique(s)) - 1 for s in labels])
    area_per_slice = (labels > 0).sum(axis=(1, 2))
    order = np.lexsort((-area_per_slice, -nodes_per_slice))
    slices = np.sort(order[:num_axial])
    fig, axes = plt.subplots(2, 3, figsize=(12.5, 9.4))
    axes = axes.ravel()
    colors = OUTLINE_COLORS
    show = dict(cmap="gray", vmin=-200, vmax=200, interpolation="nearest")
    for ax, z in zip(axes[:4], slices):
        ax.imshow(image[z], aspect=spacing_y / spacing_x, **show)
        _outline(ax, labels[z], colors)
        ax.set_title(f"axial z={z} ({int(len(np.unique(labels[z])) - 1)} nodes outlined)", fontsize=9)
    # coronal slice through the row crossing the most nodes
    row = int(np.argmax([len(np.unique(labels[:, r, :])) for r in range(labels.shape[1])]))
    axes[4].imshow(image[:, row, :], aspect=spacing_z / spacing_x, origin="lower", **show)
    _outline(axes[4], labels[:, row, :], colors)
    axes[4].set_title(f"coronal y={row} (superior up)", fontsize=9)
    # zoom on the first axial slice, around its nodes, without outlines
    z = slices[0]
    ys, xs = np.nonzero(labels[z])
    if ys.size:
        cy, cx = ys.mean(), xs.mean()
    else:
        cy, cx = image.shape[1] / 2, image.shape[2] / 2
    half = 20.0 / spacing_x
    axes[5].imshow(image[z], aspect=spacing_y / spacing_x, **show)
    axes[5].set_xlim(cx - half, cx + half)
    axes[5].set_ylim(cy + half, cy - half)
    axes[5].set_title(f"axial z={z}, ±20 mm zoom, no outlines", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Dataset502_SynthLymphNodes {case.case_id}: {case.num_nodes} nodes (instance mask outlined), "
                 f"{spacing_x:.2f}×{spacing_y:.2f}×{spacing_z:.2f} mm; unoutlined round blobs are vessels "
                 "(tubes along z)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _outline(ax, labels_2d: np.ndarray, colors) -> None:
    for label in np.unique(labels_2d):
        if label == 0:
            continue
        ax.contour((labels_2d == label).astype(float), levels=[0.5], colors=[colors[int(label) % len(colors)]],
                   linewidths=1.0)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from lesionnet.utils.files import atomic_path
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    logger.info("Wrote %s", path)
    return path
