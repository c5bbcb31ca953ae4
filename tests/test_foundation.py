"""Foundation: folder variables, dataset id resolution, geometry conversions, image I/O, atomic writes."""
from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from lesionnet import paths
from lesionnet.datasets.dataset_id import DatasetNotFoundError, dataset_folder_name, find_dataset_folder
from lesionnet.datasets.geometry import Geometry, xyz_to_zyx, zyx_to_xyz
from lesionnet.datasets.image_io import ImageReadError, read_geometry, read_image, write_image
from lesionnet.datasets.raw_format import (
    DatasetFormatError,
    RawDataset,
    TrackingPair,
    load_pairs,
    make_dataset_json,
    save_pairs,
)
from lesionnet.utils.files import atomic_path, write_json


def test_import_without_variables_does_not_crash_and_warns_once(monkeypatch, caplog):
    for var in (paths.ENV_RAW, paths.ENV_PREPROCESSED, paths.ENV_RESULTS):
        monkeypatch.delenv(var, raising=False)
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("lesionnet_")}
    subprocess.run([sys.executable, "-c", "import lesionnet, lesionnet.paths, lesionnet.cli.predict"],
                   check=True, env=env)
    monkeypatch.setattr(paths, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="lesionnet.paths"):
        first = paths.raw_dir()
        second = paths.raw_dir()
    assert first == second == paths.DEFAULT_ROOT / "raw"
    assert sum("lesionnet_raw" in r.getMessage() for r in caplog.records) == 1


def test_variables_are_read_lazily(monkeypatch, tmp_path):
    monkeypatch.setenv("lesionnet_results", str(tmp_path / "a"))
    assert paths.results_dir() == tmp_path / "a"
    monkeypatch.setenv("lesionnet_results", str(tmp_path / "b"))
    assert paths.results_dir() == tmp_path / "b"


def test_dataset_id_resolution(lesionnet_dirs):
    raw = lesionnet_dirs["raw"]
    (raw / dataset_folder_name(501, "Alpha")).mkdir()
    (raw / dataset_folder_name(7, "Beta")).mkdir()
    assert find_dataset_folder(501).name == "Dataset501_Alpha"
    assert find_dataset_folder("501").name == "Dataset501_Alpha"
    assert find_dataset_folder("Dataset501_Alpha").name == "Dataset501_Alpha"
    assert find_dataset_folder("7").name == "Dataset007_Beta"
    with pytest.raises(DatasetNotFoundError, match="No dataset with id 502.*Dataset501_Alpha"):
        find_dataset_folder(502)
    (raw / "Dataset501_Gamma").mkdir()
    with pytest.raises(DatasetNotFoundError, match="Several datasets have id 501.*Alpha.*Gamma"):
        find_dataset_folder(501)
    assert find_dataset_folder("Dataset501_Gamma").name == "Dataset501_Gamma"
    with pytest.raises(DatasetNotFoundError, match="neither a dataset id"):
        find_dataset_folder("banana")
    with pytest.raises(ValueError):
        dataset_folder_name(1000, "TooBig")


def test_missing_raw_folder_says_what_to_do(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="lesionnet_make_synthetic"):
        find_dataset_folder(501, root=tmp_path / "nowhere")


def test_axis_order_helpers():
    assert xyz_to_zyx((1, 2, 3)) == (3, 2, 1)
    assert zyx_to_xyz(xyz_to_zyx((1, 2, 3))) == (1, 2, 3)
    g = Geometry((0.5, 0.7, 2.5), shape_zyx=(4, 5, 6))
    assert g.spacing_zyx == (2.5, 0.7, 0.5) and g.shape_xyz == (6, 5, 4)
    assert g.extent_mm_xyz == pytest.approx((3.0, 3.5, 10.0))


def test_index_world_round_trip_with_oblique_direction():
    angle = np.deg2rad(20)
    direction = (np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, -1)
    g = Geometry((0.8, 0.9, 3.0), (10.0, -5.0, 100.0), direction, (10, 20, 30))
    idx_zyx = np.random.default_rng(0).uniform(0, 10, size=(7, 3))
    np.testing.assert_allclose(g.world_to_voxel(g.voxel_to_world(idx_zyx)), idx_zyx, atol=1e-9)
    assert g.contains_voxel((9.0, 19.0, 29.4)) and not g.contains_voxel((0, 0, 30.6))
    # the world point of voxel (z, y, x) = ITK's physical point of index (x, y, z)
    expected = np.asarray(g.origin_xyz) + g.direction_matrix @ (np.array([3.0, 2.0, 1.0]) * g.spacing_xyz)
    np.testing.assert_allclose(g.voxel_to_world((1.0, 2.0, 3.0)), expected, atol=1e-9)


@pytest.mark.parametrize("ending", [".nii.gz", ".nrrd", ".mha"])
def test_image_round_trip_keeps_axes_and_geometry(tmp_path, ending):
    array_zyx = np.zeros((3, 4, 5), dtype=np.float32)
    array_zyx[2, 1, 4] = 7  # z=2, y=1, x=4
    direction = (1, 0, 0, 0, -1, 0, 0, 0, 1)
    geometry = Geometry((0.7, 0.8, 2.0), (1.0, 2.0, 3.0), direction, array_zyx.shape)
    path = tmp_path / f"scan_0000{ending}"
    write_image(path, array_zyx, geometry)
    back, back_geometry = read_image(path)
    np.testing.assert_array_equal(back, array_zyx)
    assert back_geometry.same_grid(geometry) and read_geometry(path).same_grid(geometry)
    # the marked voxel (x, y, z) = (4, 1, 2) sits where SimpleITK puts index (4, 1, 2)
    import SimpleITK as sitk
    image = sitk.ReadImage(str(path))
    assert image.GetPixel(4, 1, 2) == 7
    np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((4, 1, 2)), geometry.voxel_to_world((2, 1, 4)))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_unreadable_and_unsupported_files_name_the_file(tmp_path):
    bad = tmp_path / "broken_0000.nii.gz"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="broken_0000.nii.gz"):
        read_image(bad)
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "missing.nii.gz")
    with pytest.raises(ValueError, match="unsupported"):
        write_image(tmp_path / "x.png", np.zeros((2, 2, 2), np.float32), Geometry((1, 1, 1), shape_zyx=(2, 2, 2)))


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"old": True})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_files_get_the_usual_permissions(tmp_path):
    import os
    mask = os.umask(0o022)
    try:
        write_json(tmp_path / "x.json", {})
    finally:
        os.umask(mask)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o644


def test_raw_dataset_paths_and_pairs(tmp_path, write_volume):
    folder = tmp_path / "Dataset510_Tiny"
    write_json(folder / "dataset.json", make_dataset_json("Tiny", "tracking", 2))
    write_volume(folder / "imagesTr" / "P1_T0_0000.nii.gz")
    write_volume(folder / "imagesTr" / "P1_T1_0000.nii.gz")
    pairs = [TrackingPair("a", "P1_T0", "P1_T1", (1.0, 2.0, 3.0), 4.0, (2.0, 2.0, 3.0), 5.0)]
    save_pairs(folder / "pairsTr.json", pairs)
    dataset = RawDataset(folder)
    assert dataset.task == "tracking" and dataset.num_channels == 1
    assert dataset.scan_ids("Tr") == ["P1_T0", "P1_T1"] and dataset.scan_ids("Ts") == []
    assert dataset.image_path("P1_T0").name == "P1_T0_0000.nii.gz"
    assert dataset.pairs("Tr") == pairs and pairs[0].patient_id == "P1"
    with pytest.raises(ValueError, match="split"):
        dataset.images_dir("Val")


def test_raw_format_errors_name_the_file(tmp_path):
    write_json(tmp_path / "pairs.json", [{"pair_id": "x", "source": "a", "target": "b", "source_center": [1, 2],
                                          "source_radius_mm": 3}])
    with pytest.raises(DatasetFormatError, match=r"pairs.json\[0\].*pair x.*3 numbers"):
        load_pairs(tmp_path / "pairs.json")
    write_json(tmp_path / "dup.json", [TrackingPair("x", "a", "b", (1, 2, 3), 1.0).to_json()] * 2)
    with pytest.raises(DatasetFormatError, match="dup.json.*more than once"):
        load_pairs(tmp_path / "dup.json")
    bad_meta = tmp_path / "Dataset511_Bad"
    write_json(bad_meta / "dataset.json", {"name": "Bad", "task": "segmentation", "channel_names": {"0": "CT"},
                                            "file_ending": ".nii.gz", "numTraining": 1})
    with pytest.raises(DatasetFormatError, match="dataset.json.*task"):
        RawDataset(bad_meta).task
    with pytest.raises(DatasetFormatError, match="dataset.json: not found"):
        RawDataset(tmp_path / "Dataset512_Empty").meta
