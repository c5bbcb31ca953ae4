"""lesionnet_verify_dataset: valid tiny datasets pass; each kind of breakage is reported with its file."""
from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
import SimpleITK as sitk

from lesionnet.cli.verify_dataset import main
from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.image_io import write_image
from lesionnet.datasets.raw_format import TrackingPair, make_dataset_json, save_pairs
from lesionnet.datasets.verify import Problem, nifti_header_spacing, verify_dataset, verify_dataset_report
from lesionnet.utils.files import write_json

SHAPE_ZYX = (6, 12, 10)
SPACING_XYZ = (1.5, 1.5, 3.0)  # spans >= 14 mm per axis: what the registration needs (MIN_TRACKING_EXTENT_MM)


def _pair(pair_id, source, target, source_center_zyx=(2.0, 5.0, 4.0), target_center_zyx=(3.0, 6.0, 5.2)):
    return TrackingPair(pair_id, source, target, source_center_zyx, 3.0, target_center_zyx, 2.5)


@pytest.fixture
def tracking_dataset(lesionnet_dirs, write_volume):
    """Dataset501_Track: 2 Tr scans with 2 pairs, 2 Ts scans with 1 pair."""
    folder = lesionnet_dirs["raw"] / "Dataset501_Track"
    for split, scans in (("Tr", ("p1_a", "p1_b")), ("Ts", ("p2_a", "p2_b"))):
        for i, scan in enumerate(scans):
            write_volume(folder / f"images{split}" / f"{scan}_0000.nii.gz", SHAPE_ZYX, SPACING_XYZ, seed=i)
    save_pairs(folder / "pairsTr.json", [_pair("tr1", "p1_a", "p1_b"), _pair("tr2", "p1_b", "p1_a")])
    save_pairs(folder / "pairsTs.json", [_pair("ts1", "p2_a", "p2_b")])
    write_json(folder / "dataset.json", make_dataset_json("Track", "tracking", 2))
    return folder


@pytest.fixture
def detection_dataset(lesionnet_dirs, write_volume):
    """Dataset502_Det: two channels, 2 Tr scans with masks, 1 Ts scan."""
    folder = lesionnet_dirs["raw"] / "Dataset502_Det"
    for split, scans in (("Tr", ("c1", "c2")), ("Ts", ("c3",))):
        for i, scan in enumerate(scans):
            for channel in (0, 1):
                write_volume(folder / f"images{split}" / f"{scan}_{channel:04d}.nii.gz", SHAPE_ZYX, SPACING_XYZ,
                             origin_xyz=(-10.0, 5.0, 3.0), seed=10 * i + channel)
            if split == "Tr":
                mask = np.zeros(SHAPE_ZYX, np.uint8)
                mask[1:3, 2:5, 2:5] = 1
                mask[3:5, 6:9, 5:8] = 2
                write_image(folder / "labelsTr" / f"{scan}.nii.gz", mask,
                            Geometry(SPACING_XYZ, (-10.0, 5.0, 3.0), shape_zyx=SHAPE_ZYX))
    write_json(folder / "dataset.json",
               make_dataset_json("Det", "detection", 2, channel_names={"0": "CT", "1": "PET"}))
    return folder


def _problems_for(problems, path) -> list[Problem]:
    return [p for p in problems if p.file == str(path)]


def _set_nifti_pixdim(path, axis: int, value: float) -> None:
    """Overwrite pixdim[axis] (1 = x, 2 = y, 3 = z) in a gzipped NIfTI-1 file's header bytes."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    assert struct.unpack("<i", raw[:4])[0] == 348, "expected a little-endian NIfTI-1 header"
    offset = 76 + 4 * axis
    raw[offset:offset + 4] = struct.pack("<f", value)
    path.write_bytes(gzip.compress(bytes(raw)))


# ---------------------------------------------------------------------------------------------- valid


def test_valid_tracking_dataset_has_no_problems(tracking_dataset):
    report = verify_dataset_report(tracking_dataset, progress=False)
    assert report.problems == []
    assert (report.num_scans, report.num_pairs) == (4, 3)
    assert report.summary().startswith("no problems found in 4 scans, 3 pairs")


def test_valid_detection_dataset_has_no_problems(detection_dataset):
    assert verify_dataset(detection_dataset, progress=False) == []
    assert verify_dataset(detection_dataset, check_voxels=False, progress=False) == []


# ---------------------------------------------------------------------------------------- breakages


def test_missing_scan(tracking_dataset):
    (tracking_dataset / "imagesTr" / "p1_b_0000.nii.gz").unlink()
    problems = verify_dataset(tracking_dataset, progress=False)
    found = _problems_for(problems, tracking_dataset / "pairsTr.json")
    assert len(found) == 1, problems  # one problem per missing scan, not one per pair
    assert "p1_b" in found[0].message and "not found" in found[0].message
    assert "tr1" in found[0].message and "tr2" in found[0].message


def test_unreadable_file(tracking_dataset):
    path = tracking_dataset / "imagesTs" / "p2_a_0000.nii.gz"
    path.write_bytes(b"this is not a nifti file \x00\x01\x02" * 10)
    problems = verify_dataset(tracking_dataset, progress=False)
    found = _problems_for(problems, path)
    assert len(found) == 1 and "unreadable" in found[0].message, problems
    assert found[0].is_error
    # everything else is still checked and fine
    assert all(p.file == str(path) for p in problems)


def test_nan_voxels(tracking_dataset, write_volume):
    path = tracking_dataset / "imagesTr" / "p1_a_0000.nii.gz"
    array = np.zeros(SHAPE_ZYX, np.float32)
    array[2, 3, 4] = np.nan
    array[5, 0, 0] = np.inf
    write_volume(path, SHAPE_ZYX, SPACING_XYZ, array=array)
    problems = verify_dataset(tracking_dataset, progress=False)
    found = _problems_for(problems, path)
    assert len(found) == 1, problems
    assert "1 NaN" in found[0].message and "1 inf" in found[0].message
    assert "[2, 3, 4]" in found[0].message
    # header-only mode cannot see voxel values
    assert verify_dataset(tracking_dataset, check_voxels=False, progress=False) == []


def test_zero_spacing(tracking_dataset):
    path = tracking_dataset / "imagesTr" / "p1_b_0000.nii.gz"
    _set_nifti_pixdim(path, 3, 0.0)
    # what SimpleITK makes of it: it silently substitutes 1.0 mm, so the verifier reads the header itself
    assert sitk.ReadImage(str(path)).GetSpacing()[2] == pytest.approx(1.0)
    assert nifti_header_spacing(path)[2] == 0.0
    problems = verify_dataset(tracking_dataset, progress=False)
    found = _problems_for(problems, path)
    assert len(found) == 1, problems
    assert "spacing" in found[0].message and "z=0" in found[0].message


def test_nan_spacing_in_header(tracking_dataset):
    path = tracking_dataset / "imagesTs" / "p2_b_0000.nii.gz"
    _set_nifti_pixdim(path, 1, float("nan"))
    found = _problems_for(verify_dataset(tracking_dataset, progress=False), path)
    assert len(found) == 1 and "x=nan" in found[0].message


def test_lesion_center_outside_scan(tracking_dataset):
    # x = 10.2 is past the last column (size x = 10, valid up to 9.5); z = -3 is below the first slice
    save_pairs(tracking_dataset / "pairsTr.json",
               [_pair("tr1", "p1_a", "p1_b", target_center_zyx=(3.0, 6.0, 10.2)),
                _pair("tr2", "p1_b", "p1_a", source_center_zyx=(-3.0, 5.0, 4.0))])
    problems = verify_dataset(tracking_dataset, progress=False)
    found = _problems_for(problems, tracking_dataset / "pairsTr.json")
    assert len(found) == 2, problems
    assert "tr1" in found[0].message and "target_center" in found[0].message and "outside" in found[0].message
    assert "tr2" in found[1].message and "source_center" in found[1].message
    # the messages give centers and sizes in the pairs file's [x, y, z] order
    assert found[0].message == ("pair tr1: target_center [10.2, 6.0, 3.0] lies outside scan 'p1_b' "
                                "(size x×y×z = 10×12×6)")
    assert "source_center [4.0, 5.0, -3.0]" in found[1].message


def test_mask_image_geometry_mismatch(detection_dataset):
    mask_path = detection_dataset / "labelsTr" / "c2.nii.gz"
    mask = np.zeros(SHAPE_ZYX, np.uint8)
    write_image(mask_path, mask, Geometry((0.8, 0.8, 2.5), (0.0, 0.0, 0.0), shape_zyx=SHAPE_ZYX))
    problems = verify_dataset(detection_dataset, progress=False)
    found = _problems_for(problems, mask_path)
    assert len(found) == 1, problems
    assert "spacing" in found[0].message and "origin" in found[0].message
    # shape mismatch too
    write_image(mask_path, np.zeros((6, 12, 11), np.uint8),
                Geometry(SPACING_XYZ, (-10.0, 5.0, 3.0), shape_zyx=(6, 12, 11)))
    found = _problems_for(verify_dataset(detection_dataset, progress=False), mask_path)
    assert len(found) == 1 and "shape" in found[0].message


# ----------------------------------------------------------------------------------- further checks


def test_detection_mask_problems(detection_dataset):
    (detection_dataset / "labelsTr" / "c1.nii.gz").unlink()
    bad = np.zeros(SHAPE_ZYX, np.float32)
    bad[0, 0, 0] = 1.5
    write_image(detection_dataset / "labelsTr" / "c2.nii.gz", bad,
                Geometry(SPACING_XYZ, (-10.0, 5.0, 3.0), shape_zyx=SHAPE_ZYX))
    write_image(detection_dataset / "labelsTr" / "orphan.nii.gz", np.zeros(SHAPE_ZYX, np.uint8),
                Geometry(SPACING_XYZ, shape_zyx=SHAPE_ZYX))
    problems = verify_dataset(detection_dataset, progress=False)
    assert "missing" in _problems_for(problems, detection_dataset / "labelsTr" / "c1.nii.gz")[0].message
    assert "fractional" in _problems_for(problems, detection_dataset / "labelsTr" / "c2.nii.gz")[0].message
    orphan = _problems_for(problems, detection_dataset / "labelsTr" / "orphan.nii.gz")
    assert len(orphan) == 1 and not orphan[0].is_error


def test_channels_missing_or_on_another_grid(detection_dataset, write_volume):
    (detection_dataset / "imagesTr" / "c1_0001.nii.gz").unlink()
    write_volume(detection_dataset / "imagesTs" / "c3_0001.nii.gz", SHAPE_ZYX, (0.8, 0.8, 3.0),
                 origin_xyz=(-10.0, 5.0, 3.0))
    problems = verify_dataset(detection_dataset, progress=False)
    assert "channel 1" in _problems_for(problems, detection_dataset / "imagesTr" / "c1_0001.nii.gz")[0].message
    channel_1 = detection_dataset / "imagesTs" / "c3_0001.nii.gz"
    assert "differs from channel 0" in _problems_for(problems, channel_1)[0].message


def test_pair_records_ids_radii_and_split(tracking_dataset):
    records = [
        _pair("tr1", "p1_a", "p1_b").to_json(),
        dict(_pair("tr1", "p1_b", "p1_a").to_json(), source_radius_mm=0.0),  # duplicate id, zero radius
        _pair("tr3", "p1_a", "p2_b").to_json(),  # target is a Ts scan
        {"pair_id": "tr4", "source": "p1_a"},  # broken record
    ]
    (tracking_dataset / "pairsTr.json").write_text(json.dumps(records))
    messages = [p.message for p in verify_dataset(tracking_dataset, progress=False)]
    assert any("'tr1' appears 2 times" in m for m in messages), messages
    assert any("source_radius_mm is 0.0" in m for m in messages), messages
    assert any("p2_b" in m and "imagesTs/" in m for m in messages), messages
    assert any("lacks the key 'target'" in m for m in messages), messages


def test_dataset_json_problems(tracking_dataset):
    path = tracking_dataset / "dataset.json"
    meta = json.loads(path.read_text())
    write_json(path, dict(meta, numTraining=7))
    problems = verify_dataset(tracking_dataset, progress=False)
    assert len(problems) == 1 and not problems[0].is_error and "numTraining is 7" in problems[0].message
    write_json(path, dict(meta, task="segmentation"))
    problems = verify_dataset(tracking_dataset, progress=False)
    assert len(problems) == 1 and problems[0].file == str(path) and "'task'" in problems[0].message
    path.write_text("{not json")
    assert "not valid JSON" in verify_dataset(tracking_dataset, progress=False)[0].message
    path.unlink()
    problems = verify_dataset(tracking_dataset, progress=False)
    assert len(problems) == 1 and problems[0].message == "missing"


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_exit_codes_and_messages(tracking_dataset, capsys):
    assert main(["-d", "501", "--no_progress"]) == 0
    assert "no problems found in 4 scans, 3 pairs" in capsys.readouterr().out

    broken = tracking_dataset / "imagesTs" / "p2_b_0000.nii.gz"
    broken.unlink()
    assert main(["-d", "Dataset501_Track", "--no_progress"]) == 1
    out = capsys.readouterr().out
    assert str(tracking_dataset / "pairsTs.json") + ":" in out and "p2_b" in out and " — " in out
    assert "1 problem (1 error, 0 warnings)" in out

    assert main(["-d", "999", "--no_progress"]) == 1
    assert "No dataset with id 999" in capsys.readouterr().err


def test_cli_warnings_fail_only_with_strict(tracking_dataset, capsys):
    path = tracking_dataset / "dataset.json"
    write_json(path, dict(json.loads(path.read_text()), numTraining=3))
    assert main(["-d", "501", "--no_progress"]) == 0
    assert main(["-d", "501", "--no_progress", "--strict"]) == 1
    assert "numTraining is 3" in capsys.readouterr().out


@pytest.mark.parametrize("ending", [".mha", ".nii.gz"])
def test_nan_and_truncation_in_other_formats(lesionnet_dirs, write_volume, ending):
    folder = lesionnet_dirs["raw"] / "Dataset503_Fmt"
    array = np.ones(SHAPE_ZYX, np.float32)
    array[4, 1, 7] = np.nan
    write_volume(folder / "imagesTs" / f"a_0000{ending}", SHAPE_ZYX, SPACING_XYZ, array=array)
    write_volume(folder / "imagesTs" / f"b_0000{ending}", SHAPE_ZYX, SPACING_XYZ)
    write_json(folder / "dataset.json", make_dataset_json("Fmt", "detection", 0, file_ending=ending))
    problems = verify_dataset(folder, progress=False)
    assert len(problems) == 1 and problems[0].file.endswith(f"a_0000{ending}"), problems
    assert "1 NaN" in problems[0].message and "[4, 1, 7]" in problems[0].message
    # a truncated file (header intact, voxel data cut) is unreadable
    path = folder / "imagesTs" / f"b_0000{ending}"
    data = gzip.decompress(path.read_bytes()) if ending == ".nii.gz" else path.read_bytes()
    data = data[: len(data) - 200]
    path.write_bytes(gzip.compress(data) if ending == ".nii.gz" else data)
    found = _problems_for(verify_dataset(folder, progress=False), path)
    assert len(found) == 1 and ("unreadable" in found[0].message or "truncated" in found[0].message), found
