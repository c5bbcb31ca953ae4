"""Finding trained models for ``lesionnet_predict``.

Trained models live in ``$lesionnet_results/<DatasetXXX_Name>/<method>__<plans>/fold_<k>/`` (see
:mod:`lesionnet.training.run_training`). :func:`find_trained_model` narrows the candidates by dataset,
method, plans and folds; when exactly one model (a ``<method>__<plans>`` folder) remains it is used,
otherwise the error lists the choices. :func:`load_trained_models` rebuilds each fold's network
through its method's ``build`` (from the plan section recorded in ``network.json``) and loads the
checkpoint's weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lesionnet import paths
from lesionnet.training.built_model import BuiltModel
from lesionnet.training.checkpoints import CHECKPOINT_NAMES, NETWORK_FILE, CheckpointError, load_checkpoint
from lesionnet.utils.files import load_json


class ModelNotFoundError(LookupError):
    """No trained model, or more than one, matches the request; the message lists the choices."""


@dataclass
class TrainedModel:
    """A trained ``<method>__<plans>`` folder of a dataset and the folds that have the checkpoint."""

    dataset: str
    method: str
    plans_name: str
    folder: Path
    folds: list

    def describe(self) -> str:
        return f"{self.dataset} {self.method} (plans {self.plans_name}), folds {', '.join(map(str, self.folds))}"


def list_trained_models(dataset: str | None = None, method: str | None = None, plans_name: str | None = None,
                        checkpoint: str = "final", results_dir: Path | None = None) -> list[TrainedModel]:
    """Every ``<method>__<plans>`` folder with at least one fold holding ``checkpoint_<checkpoint>.pth``."""
    if checkpoint not in CHECKPOINT_NAMES:
        raise ValueError(f"checkpoint must be one of {sorted(CHECKPOINT_NAMES)}, got {checkpoint!r}")
    root = Path(results_dir) if results_dir is not None else paths.results_dir()
    models = []
    if not root.is_dir():
        return models
    for dataset_folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if dataset is not None and dataset_folder.name != dataset:
            continue
        for model_folder in sorted(p for p in dataset_folder.iterdir() if p.is_dir() and "__" in p.name):
            model_method, model_plans = model_folder.name.split("__", 1)
            if method is not None and model_method != method:
                continue
            if plans_name is not None and model_plans != plans_name:
                continue
            folds = sorted((p.name[len("fold_"):] for p in model_folder.glob("fold_*")
                            if (p / CHECKPOINT_NAMES[checkpoint]).is_file()),
                           key=lambda f: (not f.isdigit(), int(f) if f.isdigit() else 0, f))
            if folds:
                models.append(TrainedModel(dataset_folder.name, model_method, model_plans, model_folder, folds))
    return models


def find_trained_model(dataset: str | None = None, method: str | None = None, folds=None,
                       plans_name: str | None = None, checkpoint: str = "final",
                       results_dir: Path | None = None) -> TrainedModel:
    """The one trained model matching the request (see the module docstring); ``folds`` (e.g. ``[0]``)
    restricts the folds, all must exist; ``results_dir`` replaces ``$lesionnet_results``."""
    models = list_trained_models(dataset, method, plans_name, checkpoint, results_dir)
    wanted = f"{method or 'any method'} for {dataset or 'any dataset'}"
    if not models:
        raise ModelNotFoundError(f"no trained model ({wanted}, checkpoint_{checkpoint}.pth) under "
                                 f"{results_dir or paths.results_dir()}. Train one with lesionnet_train DATASET "
                                 "METHOD FOLD.")
    if len(models) > 1:
        choices = "\n  ".join(m.describe() for m in models)
        raise ModelNotFoundError(f"{len(models)} trained models match ({wanted}); choose one with -d / -m / --plans:"
                                 f"\n  {choices}")
    model = models[0]
    if folds:
        requested = [str(f) for f in folds]
        missing = [f for f in requested if f not in model.folds]
        if missing:
            raise ModelNotFoundError(f"{model.folder}: fold(s) {', '.join(missing)} have no "
                                     f"checkpoint_{checkpoint}.pth; available: {', '.join(model.folds)}.")
        model.folds = requested
    return model


def load_fold(model: TrainedModel, fold, checkpoint: str = "final") -> tuple[dict, dict]:
    """``(network.json content, checkpoint dict)`` of one fold (checkpoint read with ``weights_only``)."""
    folder = model.folder / f"fold_{fold}"
    network_info = load_json(folder / NETWORK_FILE)
    return network_info, load_checkpoint(folder / CHECKPOINT_NAMES[checkpoint])


@dataclass
class LoadedFold:
    """One fold of a trained model, ready to predict: the built model (network in eval mode, on the
    device) and the fold's ``network.json`` (plan section, data configuration, ...)."""

    fold: str
    model: BuiltModel
    info: dict


def load_trained_models(method, model: TrainedModel, checkpoint: str = "final", device="cpu") -> list[LoadedFold]:
    """Every requested fold of ``model``, built with ``method.build(section)`` and loaded; raises
    :class:`lesionnet.training.checkpoints.CheckpointError` naming the file when a checkpoint does not
    belong to ``method`` or does not fit the network its section builds."""
    loaded = []
    for fold in model.folds:
        info, state = load_fold(model, fold, checkpoint)
        path = model.folder / f"fold_{fold}" / CHECKPOINT_NAMES[checkpoint]
        if state["method"] != method.name:
            raise CheckpointError(f"{path}: a '{state['method']}' checkpoint, not '{method.name}'.")
        built = method.build(state["configuration"])
        try:
            built.network.load_state_dict(state["model"])
        except RuntimeError as e:
            raise CheckpointError(f"{path}: the weights do not fit the network of its configuration ({e}).") from e
        built.network.to(device).eval()
        loaded.append(LoadedFold(str(fold), built, info))
    return loaded
