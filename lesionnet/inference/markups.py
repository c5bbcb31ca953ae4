"""3D Slicer markups files (``.mrk.json``) of predicted lesion centers and boxes.

ITK/SimpleITK physical points are in the LPS frame, which is what the file declares, so Slicer
shows each point on the voxel it was predicted at (File → Add Data, together with the scan).
"""
from __future__ import annotations

import os
from typing import Sequence

from lesionnet.utils.files import write_json

MARKUPS_SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/"
                  "Schema/markups-schema-v1.0.3.json#")


def markups_document(points_world_lps: Sequence[Sequence[float]], labels: Sequence[str]) -> dict:
    """A Slicer point-list markups document; points are world coordinates in mm (LPS)."""
    if len(points_world_lps) != len(labels):
        raise ValueError("one label per point is needed")
    control_points = [{
        "id": str(i + 1), "label": str(label), "description": "", "associatedNodeID": "",
        "position": [float(v) for v in point], "orientation": [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0],
        "selected": True, "locked": True, "visibility": True, "positionStatus": "defined",
    } for i, (point, label) in enumerate(zip(points_world_lps, labels))]
    return {"@schema": MARKUPS_SCHEMA,
            "markups": [{"type": "Fiducial", "coordinateSystem": "LPS", "coordinateUnits": "mm",
                         "locked": True, "labelFormat": "%N-%d", "controlPoints": control_points}]}


def write_markups(path: str | os.PathLike, points_world_lps, labels) -> None:
    """Write a ``.mrk.json`` file atomically."""
    write_json(path, markups_document(points_world_lps, labels))


def box_markups_document(boxes_world_lps: Sequence, labels: Sequence[str]) -> dict:
    """A Slicer document of box ROIs, one per ``[low_corner_xyz, high_corner_xyz]`` (world, mm, LPS): centred
    between the corners, sized by their distance along the world axes (exact for scans whose axes are
    the world's, up to flips, as in lesionnet's data; an oblique scan's box is shown axis-aligned)."""
    if len(boxes_world_lps) != len(labels):
        raise ValueError("one label per box is needed")
    markups = []
    for i, ((low, high), label) in enumerate(zip(boxes_world_lps, labels)):
        center = [(float(a) + float(b)) / 2 for a, b in zip(low, high)]
        markups.append({
            "type": "ROI", "coordinateSystem": "LPS", "coordinateUnits": "mm", "name": str(label), "locked": True,
            "roiType": "Box", "insideOut": False, "center": center,
            "size": [abs(float(b) - float(a)) for a, b in zip(low, high)],
            "orientation": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            "controlPoints": [{"id": str(i + 1), "label": str(label), "position": center,
                               "positionStatus": "defined", "visibility": True, "locked": True}]})
    return {"@schema": MARKUPS_SCHEMA, "markups": markups}


def write_box_markups(path: str | os.PathLike, boxes_world_lps, labels) -> None:
    """Write a ``.mrk.json`` file of box ROIs atomically."""
    write_json(path, box_markups_document(boxes_world_lps, labels))
