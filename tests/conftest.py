"""Shared pytest fixtures: isolated lesionnet folders and tiny synthetic images made on the fly."""
from __future__ import annotations

import numpy as np
import pytest

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.image_io import write_image


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
