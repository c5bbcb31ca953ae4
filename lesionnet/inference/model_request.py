"""What ``lesionnet_predict`` asks of a method, for tracking and detection alike: which trained model
(:class:`LearnedModelOptions`), what a method's ``predictor(request)`` is given (:class:`PredictorRequest`),
and the dataset an input folder belongs to (:func:`dataset_name_of`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lesionnet.datasets.raw_format import DATASET_FOLDER_PATTERN
from lesionnet.inference.model_discovery import LoadedFold
from lesionnet.registration.affine import RegistrationSettings


@dataclass
class LearnedModelOptions:
    """Which trained model ``lesionnet_predict`` uses for a trainable method, and how it runs it."""

    dataset: str | None = None           # dataset name (default: the one the input folder belongs to)
    folds: tuple | None = None           # default: every fold with the checkpoint
    checkpoint: str = "final"            # final | best | latest
    plans_name: str | None = None
    step_size: float = 0.5
    device: str = "cpu"
    search_region_zyx: tuple | None = None
    results_dir: Path | None = None      # where trained models are looked up (default: $lesionnet_results)


@dataclass
class PredictorRequest:
    """What a method's ``predictor(request)`` is given.

    Attributes:
        models: the trained folds to use (trainable methods; empty for the others).
        device: compute device.
        step_size: sliding-window step, a fraction of the patch.
        search_region_zyx: region scanned around the prior (None: the method's planned patch).
        heatmap_folder: where to write per-pair heatmaps (None: do not write them).
        registration: registration settings for methods that register on the fly (None: their default).
        plan: ``{"configuration", "data_configuration"}`` of the dataset's plans for an untrained method
            that declares ``uses_plan`` (None otherwise).
        options: method-specific predictor settings (e.g. a detection method's ``demo_variants``).
    """

    models: list[LoadedFold] = field(default_factory=list)
    device: str = "cpu"
    step_size: float = 0.5
    search_region_zyx: tuple | None = None
    heatmap_folder: Path | None = None
    registration: RegistrationSettings | None = None
    plan: dict | None = None
    options: dict = field(default_factory=dict)


def dataset_name_of(folder: Path) -> str | None:
    """The raw dataset an input folder belongs to (``Dataset501_...``), when it lies inside one."""
    for candidate in (folder, *folder.parents):
        if DATASET_FOLDER_PATTERN.match(candidate.name):
            return candidate.name
    return None


__all__ = ["LearnedModelOptions", "PredictorRequest", "dataset_name_of"]
