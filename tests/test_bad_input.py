"""Bad input never passes silently: each breakage is refused by the public commands, before any work.

Every row drives ``lesionnet_verify_dataset`` / ``lesionnet_plan_and_preprocess`` / ``lesionnet_predict``
in a subprocess on tiny synthetic data (made once per module, copied and broken per test) and asserts
exit status 1, no traceback, the offending file named, and no dataset or preprocessed file changed.
The unit tests at the end call the check functions in-process.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.image_io import read_image, write_image
from lesionnet.datasets.synthetic import (
    LymphNodeConfig,
    TrackingConfig,
    generate_lymph_node_dataset,
    generate_tracking_dataset,
)
from lesionnet.datasets.verification.limits import MIN_SCAN_SIZE_VOXELS, scan_size_problem
from lesionnet.datasets.verify import InputCheckError, check_dataset_input, scan_nifti_voxels, verify_dataset

TRACKING = "Dataset501_SynthLesionTracking"
DETECTION = "Dataset502_SynthLymphNodes"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """Tiny raw datasets 501 (2 patients, 16×40×40) and 502 (2 cases, 12×48×48), made once per module."""
    raw = tmp_path_factory.mktemp("bad_input_pristine") / "raw"
    generate_tracking_dataset(raw / TRACKING, TrackingConfig(num_patients=2, nominal_shape_zyx=(16, 40, 40)), seed=0,
                              progress=False)
    generate_lymph_node_dataset(raw / DETECTION, LymphNodeConfig(num_patients=2, shape_zyx=(12, 48, 48)), seed=0,
                                progress=False)
    return raw


@pytest.fixture
def dirs(pristine, tmp_path) -> dict:
    """A fresh copy of the raw datasets, an untouched preprocessed folder with one file, and a results folder."""
    raw = tmp_path / "raw"
    shutil.copytree(pristine, raw)
    preprocessed = tmp_path / "preprocessed" / TRACKING
    preprocessed.mkdir(parents=True)
    (preprocessed / "dataset_fingerprint.json").write_text("{}")
    return {"raw": raw, "preprocessed": tmp_path / "preprocessed", "results": tmp_path / "results",
            "tmp": tmp_path}


def _snapshot(*folders: Path) -> dict:
    """path -> (size, mtime_ns) of every file under ``folders``."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for f in folders if f.exists()
            for p in sorted(f.rglob("*")) if p.is_file()}


def _run_all(dirs: dict, *commands: list) -> list[subprocess.CompletedProcess]:
    """Run ``python -m lesionnet.cli.<name> args...`` for each command concurrently; their results in order."""
    env = dict(os.environ, lesionnet_raw=str(dirs["raw"]), lesionnet_preprocessed=str(dirs["preprocessed"]),
               lesionnet_results=str(dirs["results"]), OMP_NUM_THREADS="1")
    processes = [subprocess.Popen([sys.executable, "-m", f"lesionnet.cli.{name}", *args, "--no_progress"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for name, *args in commands]
    results = []
    for process, command in zip(processes, commands):
        out, _ = process.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(command, process.returncode, out))
    return results


def _assert_refused(dirs: dict, commands: list, *offending: Path) -> list[str]:
    """Each command exits 1 without a traceback, names every offending file, and changes no file."""
    before = _snapshot(dirs["raw"], dirs["preprocessed"])
    results = _run_all(dirs, *commands)
    for result in results:
        assert result.returncode == 1, result.stdout
        assert "Traceback" not in result.stdout, result.stdout
        for path in offending:
            assert str(path) in result.stdout, (path, result.stdout)
    assert _snapshot(dirs["raw"], dirs["preprocessed"]) == before
    assert not dirs["results"].exists()
    return [r.stdout for r in results]


def _predict_input(dirs: dict) -> Path:
    """The tracking test split as a prediction input folder (scans + pairs.json)."""
    folder = dirs["tmp"] / "predict_in"
    folder.mkdir()
    for path in (dirs["raw"] / TRACKING / "imagesTs").iterdir():
        shutil.copy(path, folder / path.name)
    shutil.copy(dirs["raw"] / TRACKING / "pairsTs.json", folder / "pairs.json")
    return folder


def _predict(dirs: dict, folder: Path) -> list:
    return ["predict", "-i", str(folder), "-o", str(dirs["tmp"] / "predict_out"), "-m", "affine"]


def _first_scan(folder: Path) -> Path:
    return sorted(folder.glob("*_0000.nii.gz"))[0]


def _rewrite(path: Path, array_zyx: np.ndarray, geometry: Geometry | None = None) -> None:
    write_image(path, array_zyx, geometry or read_image(path)[1])


def _truncate_nifti(path: Path) -> None:
    """Cut a .nii.gz file's decompressed bytes to half (header intact), re-gzipped."""
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[: len(data) // 2]))


def _set_nifti_dim(path: Path, axis: int, value: int) -> None:
    """Overwrite dim[axis] (1 = x, 2 = y, 3 = z) in a gzipped little-endian NIfTI-1 header."""
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[40 + 2 * axis: 42 + 2 * axis] = int(value).to_bytes(2, "little", signed=True)
    path.write_bytes(gzip.compress(bytes(data)))


# ------------------------------------------------------------------------------------------- the table
def test_truncated_int16_scan(dirs):
    bad_tr = _first_scan(dirs["raw"] / TRACKING / "imagesTr")
    assert sitk.ReadImage(str(bad_tr)).GetPixelID() == sitk.sitkInt16
    _truncate_nifti(bad_tr)
    folder = _predict_input(dirs)
    bad_ts = _first_scan(folder)
    _truncate_nifti(bad_ts)
    outputs = _assert_refused(dirs, [["verify_dataset", "-d", "501", "--strict"],
                                     ["plan_and_preprocess", "-d", "501"]], bad_tr)
    assert all("voxel data end early" in out for out in outputs)
    out, = _assert_refused(dirs, [_predict(dirs, folder)], bad_ts)
    assert "voxel data end early" in out


def test_nan_voxels_stop_plan_and_preprocess(dirs):
    path = _first_scan(dirs["raw"] / TRACKING / "imagesTr")
    image, geometry = read_image(path)
    image[2:4, 5:9, 5:9] = np.nan
    _rewrite(path, image.astype(np.float32), geometry)
    out, = _assert_refused(dirs, [["plan_and_preprocess", "-d", "501"]], path)
    assert "32 NaN voxel(s)" in out


def test_all_nan_target_scan_stops_predict(dirs):
    folder = _predict_input(dirs)
    target = json.loads((folder / "pairs.json").read_text())[0]["target"]
    path = folder / f"{target}_0000.nii.gz"
    image, geometry = read_image(path)
    _rewrite(path, np.full_like(image, np.nan), geometry)
    out, = _assert_refused(dirs, [_predict(dirs, folder)], path)
    assert f"{image.size} NaN voxel(s)" in out


def test_source_center_outside_its_scan(dirs):
    pairs_path = dirs["raw"] / TRACKING / "pairsTr.json"
    pairs = json.loads(pairs_path.read_text())
    pairs[0]["source_center"] = [500.0, 10.0, 5.0]
    pairs_path.write_text(json.dumps(pairs))
    out, = _assert_refused(dirs, [["plan_and_preprocess", "-d", "501"]], pairs_path)
    assert f"pair {pairs[0]['pair_id']}: source_center [500.0, 10.0, 5.0] lies outside" in out


def test_missing_scan_named_by_pairs(dirs):
    path = _first_scan(dirs["raw"] / TRACKING / "imagesTr")
    path.unlink()
    out, = _assert_refused(dirs, [["plan_and_preprocess", "-d", "501"]], path, dirs["raw"] / TRACKING / "pairsTr.json")
    assert "not found" in out


def test_detection_mask_with_another_spacing(dirs):
    path = sorted((dirs["raw"] / DETECTION / "labelsTr").iterdir())[0]
    mask, geometry = read_image(path, dtype=None)
    spacing = tuple(s * 1.5 for s in geometry.spacing_xyz)
    _rewrite(path, mask, Geometry(spacing, geometry.origin_xyz, geometry.direction, geometry.shape_zyx))
    out, = _assert_refused(dirs, [["plan_and_preprocess", "-d", "502"]], path)
    assert "mask grid differs from its image" in out and "spacing" in out


def test_one_slice_and_empty_scans(dirs):
    train = dirs["raw"] / TRACKING / "imagesTr"
    one_slice, empty = sorted(train.glob("*_0000.nii.gz"))[:2]
    image, geometry = read_image(one_slice)
    _rewrite(one_slice, image[:1], Geometry(geometry.spacing_xyz, geometry.origin_xyz, geometry.direction,
                                            (1, *image.shape[1:])))
    _rewrite(empty, image[:1], Geometry(geometry.spacing_xyz, geometry.origin_xyz, geometry.direction,
                                        (1, *image.shape[1:])))
    _set_nifti_dim(empty, 3, 0)  # ITK cannot write a z = 0 image; the header can say so
    folder = _predict_input(dirs)
    target = json.loads((folder / "pairs.json").read_text())[0]["target"]
    shutil.copy(one_slice, folder / f"{target}_0000.nii.gz")
    outputs = _assert_refused(dirs, [["verify_dataset", "-d", "501"], ["plan_and_preprocess", "-d", "501"]],
                              one_slice, empty)
    assert all("z=1 voxels" in out and "image is empty" in out for out in outputs)
    out, = _assert_refused(dirs, [_predict(dirs, folder)], folder / f"{target}_0000.nii.gz")
    assert f"at least {MIN_SCAN_SIZE_VOXELS} voxels along each axis" in out


# ------------------------------------------------------------------------------------ the check itself
def test_check_lists_every_problem_and_reads_only_training_by_default(pristine, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(pristine / TRACKING, raw / TRACKING)
    train, test = sorted((raw / TRACKING / "imagesTr").iterdir()), sorted((raw / TRACKING / "imagesTs").iterdir())
    _truncate_nifti(train[0])
    _truncate_nifti(train[1])
    _truncate_nifti(test[0])
    with pytest.raises(InputCheckError) as refused:
        check_dataset_input(raw / TRACKING, progress=False)
    assert [p.file for p in refused.value.problems] == [str(train[0]), str(train[1])]
    assert str(refused.value).count("\n") == 2 and str(train[1]) in str(refused.value)
    with pytest.raises(InputCheckError) as refused:
        check_dataset_input(raw / TRACKING, whole_dataset=True, progress=False)
    assert str(test[0]) in [p.file for p in refused.value.problems]


def test_nifti_voxel_scan_counts_bytes_of_every_pixel_type(tmp_path):
    geometry = Geometry((1.0, 1.0, 2.0), shape_zyx=(8, 16, 16))
    for dtype in (np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64):
        path = tmp_path / f"{np.dtype(dtype).name}.nii.gz"
        write_image(path, np.ones((8, 16, 16), dtype), geometry)
        whole = scan_nifti_voxels(path)
        assert not whole.truncated and whole.bytes_found == 2048 * np.dtype(dtype).itemsize
        _truncate_nifti(path)
        assert scan_nifti_voxels(path).truncated, dtype
    assert scan_nifti_voxels(tmp_path / "x.mha") is None


def test_scan_size_rule():
    assert scan_size_problem((16, 40, 40), (6.0, 6.0, 4.5), 14.0) is None
    assert "z=1 voxels" in scan_size_problem((1, 40, 40), (6.0, 6.0, 4.5), 14.0)
    assert "empty" in scan_size_problem((0, 40, 40), (6.0, 6.0, 4.5), None)
    assert "z=12 mm" in scan_size_problem((12, 40, 40), (6.0, 6.0, 1.0), 14.0)  # 3 voxels at 4 mm
    assert scan_size_problem((12, 40, 40), (6.0, 6.0, 1.0), None) is None       # detection: voxels only


def test_training_pair_without_target_is_an_error(pristine, tmp_path):
    folder = tmp_path / TRACKING
    shutil.copytree(pristine / TRACKING, folder)
    pairs = json.loads((folder / "pairsTr.json").read_text())
    del pairs[1]["target_center"]
    (folder / "pairsTr.json").write_text(json.dumps(pairs))
    messages = [p.message for p in verify_dataset(folder, progress=False)]
    assert any(pairs[1]["pair_id"] in m and "lack target_center" in m for m in messages), messages
