"""Where lesionnet keeps its data: the three folders of the nnU-Net-style layout.

The folders come from the environment variables ``lesionnet_raw``, ``lesionnet_preprocessed`` and
``lesionnet_results``. They are resolved lazily, each time a function below is called, so that
importing lesionnet never fails and tests can point them elsewhere with ``monkeypatch.setenv``.
When a variable is unset, the folder falls back to ``~/lesionnet_data/<raw|preprocessed|results>``
and a warning says so, once per variable and process.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

ENV_RAW = "lesionnet_raw"
ENV_PREPROCESSED = "lesionnet_preprocessed"
ENV_RESULTS = "lesionnet_results"

DEFAULT_ROOT = Path.home() / "lesionnet_data"
_DEFAULT_SUBFOLDER = {ENV_RAW: "raw", ENV_PREPROCESSED: "preprocessed", ENV_RESULTS: "results"}
_warned: set[str] = set()


def _folder(env_var: str) -> Path:
    value = os.environ.get(env_var)
    if value:
        return Path(value).expanduser()
    folder = DEFAULT_ROOT / _DEFAULT_SUBFOLDER[env_var]
    if env_var not in _warned:
        _warned.add(env_var)
        logger.warning(
            "Environment variable %s is not set; using the default folder %s. "
            "Set it (export %s=/path/to/folder) to keep data elsewhere.",
            env_var, folder, env_var,
        )
    return folder


def raw_dir() -> Path:
    """Folder holding raw datasets (``Dataset501_Name/`` ...)."""
    return _folder(ENV_RAW)


def preprocessed_dir() -> Path:
    """Folder holding fingerprints, plans and preprocessed arrays."""
    return _folder(ENV_PREPROCESSED)


def results_dir() -> Path:
    """Folder holding trained models, logs and validation outputs."""
    return _folder(ENV_RESULTS)


def preprocessed_folder_for(raw_folder: str | os.PathLike) -> Path:
    """``$lesionnet_preprocessed/<raw dataset folder name>``: a dataset's fingerprint, plans and arrays."""
    return preprocessed_dir() / Path(raw_folder).name
