"""lesionnet_convert_dls: DeepLesion subvolumes written like DL_save_nifti.py + real DLS records → raw dataset.

The subvolumes are fabricated with nibabel exactly the way DeepLesion's ``DL_save_nifti.py`` writes
them (``V[row, col, slice]`` from ``cv2.merge``, affine ``[[0, -s1, 0], [-s0, 0, 0], [0, 0, -s2]]``,
no translation; float64 for 300 slices or more). The pairs, centers, spacings and diameters are
real records of the public DLS ``test.json``. To keep the tests fast, the in-plane size of each
fabricated subvolume is shrunk to just contain its lesion centers (centers are NOT shifted:
DeepLesion slices are 512×512, ours are e.g. 210×281), while the number of slices is the real one
from the file name (``223-283`` → 61), which the converter checks. A bright voxel marks each lesion
center (rounded) so that the round trip can be checked on the converted image.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lesionnet.cli.convert_dls import main
from lesionnet.datasets.dls_convert import (
    DEEPLESION_DIRECTION,
    DL_SAVE_NIFTI_DIRECTION,
    DLSConversionError,
    DLSLayoutError,
    convert_dls,
    dls_radius_mm,
    expected_num_slices,
    load_dls_annotations,
    read_deeplesion_subvolume,
    scan_id_from_filename,
)
from lesionnet.datasets.geometry import Geometry, xyz_to_zyx, zyx_to_xyz
from lesionnet.datasets.image_io import read_image
from lesionnet.datasets.raw_format import load_pairs
from lesionnet.datasets.verify import verify_dataset

nib = pytest.importorskip("nibabel")

# Real records of the public DLS test.json (github.com/JimmyCai91/DLT, data/test.json), needed keys only.
DLS_RECORDS = {
    "0001": {"source": "000016_01_01_002-014.nii.gz", "target": "000016_02_01_223-283.nii.gz",
             "source center": [273.2, 214.1, 6.0], "target center": [272.2, 203.5, 30.0],
             "source spacing": [0.703125, 0.703125, 5.0], "target spacing": [0.82, 0.82, 1.0],
             "source recist diameter": [24.0, 21.4], "target recist diameter": [20.4, 17.9],
             "source recist slice": "000016_01_01/008.png", "target recist slice": "000016_02_01/253.png"},
    "0002": {"source": "000016_02_01_223-283.nii.gz", "target": "000016_01_01_002-014.nii.gz",
             "source center": [272.2, 203.5, 30.0], "target center": [273.2, 214.1, 6.0],
             "source spacing": [0.82, 0.82, 1.0], "target spacing": [0.703125, 0.703125, 5.0],
             "source recist diameter": [20.4, 17.9], "target recist diameter": [24.0, 21.4],
             "source recist slice": "000016_02_01/253.png", "target recist slice": "000016_01_01/008.png"},
    "0711": {"source": "000784_01_01_121-131.nii.gz", "target": "000784_02_01_124-135.nii.gz",
             "source center": [180.6, 171.5, 6.0], "target center": [176.0, 177.5, 6.0],
             "source spacing": [0.732422, 0.732422, 5.0], "target spacing": [0.763672, 0.763672, 5.0],
             "source recist diameter": [41.3, 31.4], "target recist diameter": [41.1, 27.1],
             "source recist slice": "000784_01_01/127.png", "target recist slice": "000784_02_01/130.png"},
    "0712": {"source": "000784_02_01_124-135.nii.gz", "target": "000784_01_01_121-131.nii.gz",
             "source center": [176.0, 177.5, 6.0], "target center": [180.6, 171.5, 6.0],
             "source spacing": [0.763672, 0.763672, 5.0], "target spacing": [0.732422, 0.732422, 5.0],
             "source recist diameter": [41.1, 27.1], "target recist diameter": [41.3, 31.4],
             "source recist slice": "000784_02_01/130.png", "target recist slice": "000784_01_01/127.png"},
}

MARKER = 3000


def _round(v: float) -> int:
    return int(math.floor(v + 0.5))


def write_like_dl_save_nifti(path: Path, slices: list, spacing) -> None:
    """Replica of ``slices2nifti`` in DeepLesion's DL_save_nifti.py.

    ``cv2.merge(ims)`` of single-channel (rows, cols) int16 slices is ``np.stack(ims, axis=-1)``:
    an int16 array ``V[row, col, slice]``. From 300 slices on, the script fills ``np.empty`` (float64).
    ``spacing`` is DL_info.csv's ``Spacing_mm_px_`` (``[s0, s1, s2]``; s0 = s1 in-plane).
    """
    if len(slices) < 300:
        volume = np.stack(slices, axis=-1)
    else:
        volume = np.empty((slices[0].shape[0], slices[0].shape[1], len(slices)))
        for i, im in enumerate(slices):
            volume[:, :, i] = im
    T = np.array([[0, -spacing[1], 0, 0], [-spacing[0], 0, 0, 0], [0, 0, -spacing[2], 0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(volume, T), str(path))


def _scene(records: dict) -> dict:
    """file name → (rows, cols, n_slices, spacing, [center_xyz, ...]) for every subvolume of ``records``."""
    scans: dict = {}
    for r in records.values():
        for which in ("source", "target"):
            entry = scans.setdefault(r[which], {"spacing": r[f"{which} spacing"], "centers": []})
            entry["centers"].append(tuple(r[f"{which} center"]))
    out = {}
    for name, entry in scans.items():
        cols = max(_round(c[0]) for c in entry["centers"]) + 5
        rows = max(_round(c[1]) for c in entry["centers"]) + 9
        if rows == cols:
            rows += 1  # keep the in-plane shape asymmetric so that a row/column mix-up shows
        out[name] = (rows, cols, expected_num_slices(name), entry["spacing"], entry["centers"])
    return out


def _slices(rows: int, cols: int, n: int, centers) -> list:
    """int16 HU-like slices with an asymmetric pattern and a marker at every center (x=col, y=row, z=slice)."""
    r = np.arange(rows)[:, None]
    c = np.arange(cols)[None, :]
    ims = [(((r * 7 + c * 3 + s * 11) % 200) - 1000).astype(np.int16) for s in range(n)]
    for x, y, z in centers:
        ims[_round(z)][_round(y), _round(x)] = MARKER
    return ims


@pytest.fixture
def dls_input(tmp_path):
    """(images_dir, annotation_path, scene) with DeepLesion-style files for DLS_RECORDS."""
    images = tmp_path / "Images_nifti"
    images.mkdir()
    scene = _scene(DLS_RECORDS)
    for name, (rows, cols, n, spacing, centers) in scene.items():
        write_like_dl_save_nifti(images / name, _slices(rows, cols, n, centers), spacing)
    annotation = tmp_path / "test.json"
    annotation.write_text(json.dumps(DLS_RECORDS))
    return images, annotation, scene


# ------------------------------------------------------------------------------------------------


def test_fabricated_file_has_deeplesion_layout_in_simpleitk(dls_input):
    """What SimpleITK makes of DL_save_nifti.py's output: rows and columns swapped, slices along -z."""
    images, _, scene = dls_input
    name = "000016_01_01_002-014.nii.gz"
    rows, cols, n, spacing, centers = scene[name]
    image = sitk.ReadImage(str(images / name))
    assert image.GetSize() == (rows, cols, n)  # ITK index (row, col, slice)
    assert np.allclose(image.GetDirection(), DL_SAVE_NIFTI_DIRECTION)
    assert np.allclose(image.GetSpacing(), (spacing[0], spacing[1], spacing[2]))
    assert image.GetOrigin() == (0.0, 0.0, 0.0)
    x, y, z = (_round(v) for v in centers[0])
    array = sitk.GetArrayFromImage(image)  # [slice, col, row]
    assert array[z, x, y] == MARKER


def test_dls_z_is_the_png_slice_minus_the_subvolume_start():
    for r in DLS_RECORDS.values():
        for which in ("source", "target"):
            start = int(r[which].split("_")[-1].split("-")[0])
            png = int(r[f"{which} recist slice"].split("/")[-1][:-4])
            assert r[f"{which} center"][2] == png - start


def test_round_trip(dls_input, lesionnet_dirs, monkeypatch):
    images, annotation, scene = dls_input
    reads = []
    import lesionnet.datasets.dls_convert as dls_convert
    original = dls_convert.read_image
    monkeypatch.setattr(dls_convert, "read_image",
                        lambda path, **kw: reads.append(Path(path).name) or original(path, **kw))

    result = convert_dls(images, annotation, 601, progress=False)

    folder = lesionnet_dirs["raw"] / "Dataset601_DLS"
    assert result.folder == folder and result.num_scans == 4 and result.num_pairs == 4
    assert sorted(reads) == sorted(scene)  # each scan converted once although each is in 2 pairs
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["task"] == "tracking" and meta["numTraining"] == 0 and meta["file_ending"] == ".nii.gz"
    pairs = load_pairs(folder / "pairsTs.json")
    assert [p.pair_id for p in pairs] == ["test_0001", "test_0002", "test_0711", "test_0712"]
    written = json.loads((folder / "pairsTs.json").read_text())  # the file keeps the DLS [x, y, z]
    assert [(w["source_center"], w["target_center"]) for w in written] == \
        [(r["source center"], r["target center"]) for r in DLS_RECORDS.values()]

    for pair, (key, record) in zip(pairs, DLS_RECORDS.items()):
        assert pair.patient == record["source"][:6]
        for which in ("source", "target"):
            scan_id = getattr(pair, which)
            assert scan_id == scan_id_from_filename(record[which])
            center_zyx = getattr(pair, f"{which}_center_zyx")
            assert list(zyx_to_xyz(center_zyx)) == record[f"{which} center"]  # kept exactly as given
            center_xyz = record[f"{which} center"]
            spacing = record[f"{which} spacing"]
            assert getattr(pair, f"{which}_radius_mm") == pytest.approx(
                max(record[f"{which} recist diameter"]) / 2 * spacing[0])

            path = folder / "imagesTs" / f"{scan_id}_0000.nii.gz"
            image = sitk.ReadImage(str(path))
            rows, cols, n, _, _ = scene[record[which]]
            assert image.GetSize() == (cols, rows, n)  # ITK (x=column, y=row, z=slice)
            assert np.allclose(image.GetSpacing(), spacing)
            assert np.allclose(image.GetDirection(), DEEPLESION_DIRECTION)
            array, geometry = read_image(path, dtype=None)
            assert array.dtype == np.int16 and array.shape == (n, rows, cols)

            world = Geometry(image.GetSpacing(), image.GetOrigin(), image.GetDirection(),
                             xyz_to_zyx(image.GetSize())).voxel_to_world(center_zyx)
            back_xyz = image.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in world))
            assert np.allclose(back_xyz, center_xyz, atol=1e-6)
            x, y, z = (_round(v) for v in back_xyz)
            assert array[z, y, x] == MARKER == array.max()
            # world coordinates equal those SimpleITK gives for the same voxel of the DeepLesion file
            original_image = sitk.ReadImage(str(images / record[which]))
            original_world = original_image.TransformContinuousIndexToPhysicalPoint(
                (center_xyz[1], center_xyz[0], center_xyz[2]))  # DeepLesion file: ITK index (row, col, slice)
            assert np.allclose(world, original_world, atol=1e-3)

    # the result is a valid lesionnet dataset
    assert verify_dataset(folder, progress=False) == []


def test_missing_scan_is_skipped_or_fails_with_strict(dls_input, lesionnet_dirs, caplog):
    images, annotation, _ = dls_input
    (images / "000784_02_01_124-135.nii.gz").unlink()

    with pytest.raises(DLSConversionError, match="000784_02_01_124-135.nii.gz"):
        convert_dls(images, annotation, 602, strict=True, progress=False)
    assert not any((lesionnet_dirs["raw"] / "Dataset602_DLS").rglob("*.nii.gz"))  # nothing converted

    with caplog.at_level(logging.WARNING):
        result = convert_dls(images, annotation, 602, progress=False)
    assert result.skipped_pairs == ["0711", "0712"] and result.num_pairs == 2 and result.num_scans == 2
    assert "000784_02_01_124-135.nii.gz" in caplog.text and "Skipped 2 of 4 pairs" in caplog.text
    assert [p.pair_id for p in load_pairs(result.folder / "pairsTs.json")] == ["test_0001", "test_0002"]


def test_file_matching_neither_layout_fails_before_writing(dls_input, lesionnet_dirs):
    images, annotation, scene = dls_input
    name = "000784_01_01_121-131.nii.gz"
    rows, cols, n, spacing, centers = scene[name]
    volume = np.stack(_slices(rows, cols, n, centers), axis=0)  # (slice, row, col) under DeepLesion's affine
    T = np.array([[0, -spacing[1], 0, 0], [-spacing[0], 0, 0, 0], [0, 0, -spacing[2], 0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(volume, T), str(images / name))
    with pytest.raises(DLSLayoutError) as excinfo:
        convert_dls(images, annotation, 603, progress=False)
    message = str(excinfo.value)
    assert name in message and "11 slices" in message and "DL_save_nifti.py" in message
    assert not (lesionnet_dirs["raw"] / "Dataset603_DLS" / "imagesTs").exists()


def test_other_orientations_are_read_from_the_header(dls_input, tmp_path):
    """A SimpleITK re-save of the [slice, row, col] array with slices reversed and identity direction
    (another DeepLesion conversion script does this) and an already converted file give the same result."""
    images, annotation, scene = dls_input
    name = "000784_01_01_121-131.nii.gz"
    rows, cols, n, spacing, centers = scene[name]
    reference, reference_geometry = read_deeplesion_subvolume(images / name, xyz_to_zyx(spacing))

    flipped = np.stack(_slices(rows, cols, n, centers), axis=0)[::-1]
    image = sitk.GetImageFromArray(np.ascontiguousarray(flipped))
    image.SetSpacing(spacing)
    other = tmp_path / "other"
    other.mkdir()
    sitk.WriteImage(image, str(other / name))
    array, geometry = read_deeplesion_subvolume(other / name, xyz_to_zyx(spacing))
    assert np.array_equal(array, reference)
    assert np.allclose(geometry.direction, DEEPLESION_DIRECTION)
    assert np.allclose(geometry.origin_xyz, (0.0, 0.0, (n - 1) * spacing[2]))  # voxel 0 keeps its world position

    again = tmp_path / "again"
    again.mkdir()
    image = sitk.GetImageFromArray(reference)
    image.SetSpacing(spacing)
    image.SetDirection(DEEPLESION_DIRECTION)
    sitk.WriteImage(image, str(again / name))
    array, geometry = read_deeplesion_subvolume(again / name, xyz_to_zyx(spacing))
    assert np.array_equal(array, reference) and geometry.same_grid(reference_geometry)


def test_float64_subvolumes_of_300_slices_become_int16(tmp_path):
    name = "000001_01_01_001-300.nii.gz"
    rows, cols, spacing = 14, 11, [0.8, 0.8, 1.0]
    center_xyz = (7.0, 3.0, 250.0)
    write_like_dl_save_nifti(tmp_path / name, _slices(rows, cols, 300, [center_xyz]), spacing)
    assert nib.load(str(tmp_path / name)).get_data_dtype() == np.float64
    array, geometry = read_deeplesion_subvolume(tmp_path / name, xyz_to_zyx(spacing))
    assert array.dtype == np.int16 and array.shape == (300, rows, cols)
    assert array[250, 3, 7] == MARKER == array.max()


def test_annotation_helpers():
    assert dls_radius_mm([24.0, 21.4], [5.0, 0.703125, 0.703125]) == pytest.approx(12 * 0.703125)  # spacing (z, y, x)
    assert expected_num_slices("000016_02_01_223-283.nii.gz") == 61
    assert expected_num_slices("scan.nii.gz") is None


def test_real_test_json_parses_and_centers_fit_the_file_names():
    path = Path(__file__).parent / "data" / "dls" / "test.json"
    if not path.is_file():
        pytest.skip("tests/data/dls/test.json not present")
    records = load_dls_annotations(path)
    assert len(records) == 960
    raw = json.loads(path.read_text())
    for r in records:
        for which in ("source", "target"):
            z, _, _ = getattr(r, f"{which}_center_zyx")
            assert 0 <= z < expected_num_slices(getattr(r, f"{which}_file"))
            assert getattr(r, f"{which}_radius_mm") > 0
            assert list(zyx_to_xyz(getattr(r, f"{which}_center_zyx"))) == raw[r.key][f"{which} center"]
            assert list(zyx_to_xyz(getattr(r, f"{which}_spacing_zyx"))) == raw[r.key][f"{which} spacing"]


def test_cli(dls_input, lesionnet_dirs, capsys):
    images, annotation, _ = dls_input
    argv = ["--images", str(images), "--annotations", str(annotation), "-d", "604", "--name", "DLSTest",
            "--split", "Tr", "--no_progress"]
    assert main(argv) == 0
    folder = lesionnet_dirs["raw"] / "Dataset604_DLSTest"
    assert len(list((folder / "imagesTr").glob("*_0000.nii.gz"))) == 4
    assert json.loads((folder / "dataset.json").read_text())["numTraining"] == 4
    assert "4 pairs in pairsTr.json" in capsys.readouterr().out

    assert main(argv) == 1  # pairsTr.json exists
    assert "--overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0

    assert main(["--images", str(images), "--annotations", str(images / "nope.json"), "-d", "605",
                 "--no_progress"]) == 1
    assert "nope.json" in capsys.readouterr().err
