"""Shared pytest fixtures: isolated lesionnet folders and tiny synthetic images made on the fly."""
from __future__ import annotations

import numpy as np
import pytest
from phantoms import FAST_DEFORMABLE, FAST_REGISTRATION

from lesionnet.cli import plan_and_preprocess
from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.image_io import write_image
from lesionnet.datasets.synthetic import TrackingConfig, generate_tracking_dataset
from lesionnet.planning import fingerprint as fp_module
from lesionnet.preprocessing import preprocess as pre_module

DATASET_501 = "Dataset501_SynthLesionTracking"


@pytest.fixture
def lesionnet_dirs(tmp_path, monkeypatch):
    """Point lesionnet_raw / _preprocessed / _results at fresh folders under ``tmp_path``."""
    dirs = {}
    for var, sub in (("lesionnet_raw", "raw"), ("lesionnet_preprocessed", "preprocessed"),
                     ("lesionnet_results", "results")):
        folder = tmp_path / sub
        folder.mkdir()
        monkeypatch.setenv(var, str(folder))
        dirs[sub] = folder
    return dirs


@pytest.fixture
def write_volume():
    """Factory writing a small random volume: ``write_volume(path, shape_zyx, spacing_xyz, ...)``."""

    def _write(path, shape_zyx=(8, 16, 16), spacing_xyz=(1.0, 1.0, 2.0), origin_xyz=(0.0, 0.0, 0.0),
               array=None, seed=0):
        if array is None:
            array = np.random.default_rng(seed).normal(0, 100, size=shape_zyx).astype(np.float32)
        geometry = Geometry(spacing_xyz, origin_xyz, shape_zyx=array.shape)
        write_image(path, array, geometry)
        return geometry

    return _write


@pytest.fixture(scope="session")
def preprocessed_501(tmp_path_factory):
    """A tiny Dataset501 (4 patients), planned and preprocessed once per test session (read-only for tests:
    the trainers write only the deterministic splits file there)."""
    root = tmp_path_factory.mktemp("train501")
    dirs = {name: root / name for name in ("raw", "preprocessed")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("lesionnet_raw", str(dirs["raw"]))
        mp.setenv("lesionnet_preprocessed", str(dirs["preprocessed"]))
        mp.setattr(fp_module, "PRIOR_ERROR_REGISTRATION", FAST_REGISTRATION)
        mp.setattr(fp_module, "DEFORMABLE_PRIOR", FAST_DEFORMABLE)
        mp.setattr(fp_module, "DEFAULT_PRIOR_REGISTRATION", FAST_REGISTRATION)
        mp.setattr(pre_module, "DEFAULT_PRIOR_REGISTRATION", FAST_REGISTRATION)
        generate_tracking_dataset(dirs["raw"] / DATASET_501,
                                  TrackingConfig(num_patients=4, nominal_shape_zyx=(16, 40, 40)), seed=0,
                                  progress=False)
        assert plan_and_preprocess.main(["-d", "501", "-np", "1", "--gpu_memory_gb", "2", "--no_progress"]) == 0
    return dirs


def use_preprocessed(monkeypatch, dirs: dict, results) -> None:
    """Point lesionnet_raw / _preprocessed at a shared preprocessed dataset and lesionnet_results at ``results``."""
    monkeypatch.setenv("lesionnet_raw", str(dirs["raw"]))
    monkeypatch.setenv("lesionnet_preprocessed", str(dirs["preprocessed"]))
    monkeypatch.setenv("lesionnet_results", str(results))


@pytest.fixture
def env_501(preprocessed_501, tmp_path, monkeypatch):
    use_preprocessed(monkeypatch, preprocessed_501, tmp_path / "results")
    return tmp_path / "results"
