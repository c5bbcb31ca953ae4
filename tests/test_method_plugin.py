"""A method is a plug-in: a tracker defined here, registered in ``lesionnet.methods.REGISTRY``, is planned,
preprocessed for, trained, validated, resumed and used for prediction through the command-line entry
points and the same importable functions they call — with no change to library code.

The tracker learns one offset vector (mm) added to the affine prior; with an L1 loss in mm its best
offset is the per-axis median of ``target - prior`` over the training pairs.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from phantoms import FAST_DEFORMABLE, FAST_REGISTRATION

from lesionnet.cli import plan_and_preprocess
from lesionnet.cli import predict as predict_cli
from lesionnet.cli import train as train_cli
from lesionnet.datasets.prediction_format import predicted_center_zyx, prediction_record_from_pair, read_predictions
from lesionnet.datasets.synthetic import TrackingConfig, generate_tracking_dataset
from lesionnet.evaluation.validation import tracking_validation_metrics
from lesionnet.methods import REGISTRY, Method, get_method
from lesionnet.planning import fingerprint as fp_module
from lesionnet.planning.plans_io import load_plans
from lesionnet.preprocessing import preprocess as pre_module
from lesionnet.preprocessing.case import lesion_on_grids, preprocess_scan, register_scan_pair, registration_settings_of
from lesionnet.preprocessing.loading import PreprocessedDataset
from lesionnet.training.batch_stream import SeededBatchLoader, make_batch_stream
from lesionnet.training.built_model import BuiltModel
from lesionnet.training.checkpoints import FINAL, LATEST, load_checkpoint
from lesionnet.training.run_training import train_model, training_output_folder

DATASET = "Dataset501_SynthLesionTracking"
NAME = "offset_tracker"


class OffsetNetwork(torch.nn.Module):
    """``center = prior + offset_mm / spacing``: one learned vector (mm, (z, y, x))."""

    def __init__(self, init_offset_mm):
        super().__init__()
        self.offset_mm = torch.nn.Parameter(torch.tensor(init_offset_mm, dtype=torch.float32))

    def forward(self, prior_zyx: torch.Tensor, spacing_zyx: torch.Tensor) -> dict:
        return {"center_zyx": prior_zyx + self.offset_mm / spacing_zyx}


def _centers(pairs, key) -> np.ndarray:
    return np.array([getattr(p, key) for p in pairs], dtype=np.float32)


class OffsetTracker(Method):
    """The test's method: everything it declares, nothing borrowed from a built-in method."""

    name = NAME
    task = "tracking"
    description = "test tracker: the affine prior plus one learned offset"
    trainable = True
    predicts = True
    presets = {"plan": {}, "shifted": {"init_offset_mm": [4.0, -4.0, 4.0]}}
    selection_metric = ("med_mm", "min")
    memory_driven_keys = ()

    def plan(self, context) -> dict:
        data_id, data_config = context.data_configuration(context.tracking_geometry["target_spacing"]["value"])
        return {"data_identifier": data_id, "data_configuration": data_config, "batch_size": 4,
                "init_offset_mm": [0.0, 0.0, 0.0]}

    def build(self, section: dict) -> BuiltModel:
        network = OffsetNetwork(section["init_offset_mm"])

        def criterion(outputs, batch):
            error_mm = (outputs["center_zyx"] - batch["target_zyx"]) * batch["spacing_zyx"]
            return {"loss": error_mm.abs().sum(dim=1).mean()}

        return BuiltModel(network, criterion, lambda outputs: outputs["center_zyx"], ("prior_zyx", "spacing_zyx"))

    def training_defaults(self, section: dict) -> dict:
        return {"batch_size": section["batch_size"]}

    def batches(self, data, item_ids, section, config, first_batch):
        by_id = {p.pair_id: p for p in data.pairs()}

        def make_batch(pairs, draws):
            spacing = [data.cached_case(p.target).geometry.spacing_zyx for p in pairs]
            return {"prior_zyx": _centers(pairs, "prior_center_zyx"),
                    "target_zyx": _centers(pairs, "target_center_zyx"), "spacing_zyx": np.array(spacing, np.float32)}

        loader = SeededBatchLoader([by_id[i] for i in item_ids], make_batch, config.batch_size, config.seed,
                                   first_batch, config.num_workers)
        return make_batch_stream(loader, config.num_workers)

    def validate(self, model, data, item_ids, section, device) -> dict:
        by_id = {p.pair_id: p for p in data.pairs()}
        pairs = [by_id[i] for i in item_ids]
        spacing = np.array([data.cached_case(p.target).geometry.spacing_zyx for p in pairs], dtype=np.float32)
        with torch.no_grad():
            outputs = model.network(torch.as_tensor(_centers(pairs, "prior_center_zyx")), torch.as_tensor(spacing))
        return tracking_validation_metrics(model.decode(outputs).numpy(), _centers(pairs, "target_center_zyx"), spacing,
                                           [p.target_radius_mm for p in pairs], [p.pair_id for p in pairs])

    def predictor(self, request):
        return OffsetCaseTracker(request.models)


class OffsetCaseTracker:
    """Per case: the plan's preprocessing and registration prior (the library's public functions), plus the
    learned offset."""

    def __init__(self, folds):
        self.network = folds[0].model.network
        self.data_configuration = folds[0].info["data_configuration"]
        self.settings, self.symmetric = registration_settings_of(self.data_configuration)
        self.description = {"registration": self.settings.to_dict()}

    def __call__(self, tracking_input, pairs):
        source_id, target_id = pairs[0].source, pairs[0].target
        source = preprocess_scan(tracking_input.scan_paths[source_id], self.data_configuration)
        target = preprocess_scan(tracking_input.scan_paths[target_id], self.data_configuration)
        registration = register_scan_pair(source, target, source_id, target_id, self.settings, self.symmetric)
        records = []
        for pair in pairs:
            _, prior_zyx, _ = lesion_on_grids(registration, pair.source_center_zyx, pair.source_radius_mm,
                                              source.raw_geometry, source.geometry, target.geometry)
            spacing = torch.tensor(target.geometry.spacing_zyx, dtype=torch.float32)
            with torch.no_grad():
                center = self.network(torch.as_tensor(prior_zyx, dtype=torch.float32), spacing)["center_zyx"]
            world = target.geometry.voxel_to_world(center.double().numpy())
            records.append(prediction_record_from_pair(pair, target.raw_geometry.world_to_voxel(world).tolist(),
                                                       target.raw_geometry.spacing_zyx, world.tolist()))
        return records


@pytest.fixture
def registered(monkeypatch):
    """The test method in the registry (removed again after the test)."""
    method = OffsetTracker()
    monkeypatch.setitem(REGISTRY, NAME, method)
    return method


@pytest.fixture(scope="module")
def raw_501(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    generate_tracking_dataset(root / "raw" / DATASET, TrackingConfig(num_patients=4, nominal_shape_zyx=(16, 40, 40)),
                              seed=1, progress=False)
    return root


@pytest.fixture
def dirs(raw_501, tmp_path, monkeypatch):
    monkeypatch.setenv("lesionnet_raw", str(raw_501 / "raw"))
    monkeypatch.setenv("lesionnet_preprocessed", str(tmp_path / "preprocessed"))
    monkeypatch.setenv("lesionnet_results", str(tmp_path / "results"))
    monkeypatch.setattr(fp_module, "PRIOR_ERROR_REGISTRATION", FAST_REGISTRATION)
    monkeypatch.setattr(fp_module, "DEFORMABLE_PRIOR", FAST_DEFORMABLE)
    monkeypatch.setattr(fp_module, "DEFAULT_PRIOR_REGISTRATION", FAST_REGISTRATION)
    monkeypatch.setattr(pre_module, "DEFAULT_PRIOR_REGISTRATION", FAST_REGISTRATION)
    return tmp_path


def test_a_method_defined_here_is_planned_trained_resumed_and_predicted(dirs, registered, capsys):
    # planned next to the built-in methods, and its data preprocessed
    assert plan_and_preprocess.main(["-d", "501", "-np", "1", "--gpu_memory_gb", "2", "--no_progress"]) == 0
    assert f"{NAME}: planned" in capsys.readouterr().out
    plans = load_plans(501)
    section = plans["configurations"][NAME]
    assert section["method"] == NAME and section["data_identifier"] == plans["configurations"]["tlt"]["data_identifier"]

    # the command line offers it (and only where it fits)
    assert NAME in train_cli.build_parser().format_help() and NAME in predict_cli.build_parser().format_help()
    with pytest.raises(ValueError, match="tracking method"):
        get_method(NAME, task="detection")

    # trained through lesionnet_train from a deliberately wrong start (a preset: a plan override); the prior's
    # error has a median of about 0, so learning moves the offset back towards 0 and lowers the error
    args = ["501", NAME, "0", "--preset", "shifted", "--epochs", "4", "--iterations", "10", "--lr", "0.3", "--seed",
            "2", "--no_progress"]
    assert train_cli.main(args) == 0
    folder = training_output_folder(DATASET, NAME, 0)
    final = load_checkpoint(folder / FINAL)
    data = PreprocessedDataset(501, section["data_identifier"])
    splits = json.loads((Path(os.environ["lesionnet_preprocessed"]) / DATASET / "splits_final.json").read_text())
    train = [p for p in data.pairs() if p.pair_id in set(splits[0]["train"])]
    spacing = np.array([data.case(p.target).geometry.spacing_zyx for p in train])
    error_mm = (_centers(train, "target_center_zyx") - _centers(train, "prior_center_zyx")) * spacing
    learned, start = final["model"]["offset_mm"].numpy(), np.array([4.0, -4.0, 4.0])
    assert final["configuration"]["init_offset_mm"] == start.tolist() and section["init_offset_mm"] == [0.0] * 3
    assert np.abs(error_mm - learned).sum(axis=1).mean() < np.abs(error_mm - start).sum(axis=1).mean() - 1.0
    assert np.linalg.norm(learned - np.median(error_mm, axis=0)) < 0.5 * np.linalg.norm(start)
    # validated every epoch with its own metric, the untrained network first
    history = final["history"]
    assert final["best_metric"]["name"] == "val_med_mm" and len(history) == 4
    assert set(final["initial_validation"]) == {k for k in history[-1] if k.startswith("val_")}

    # interrupted after epoch 2, then continued with --c: the same weights as the uninterrupted run
    os.environ["lesionnet_results"] = str(dirs / "resumed")
    real_batches, served = registered.batches, []

    def interrupted_after_two_epochs(*a, **k):
        for batch in real_batches(*a, **k):
            served.append(1)
            if len(served) > 20:
                raise KeyboardInterrupt
            yield batch

    try:
        registered.batches = interrupted_after_two_epochs
        with pytest.raises(KeyboardInterrupt):
            train_model(501, registered, 0, preset="shifted", progress=False, num_epochs=4, iterations_per_epoch=10,
                        learning_rate=0.3, seed=2)
        del registered.batches
        resumed_folder = training_output_folder(DATASET, NAME, 0)
        assert load_checkpoint(resumed_folder / LATEST)["epoch"] == 2 and not (resumed_folder / FINAL).exists()
        assert train_cli.main(args + ["--c"]) == 0
        assert torch.equal(load_checkpoint(resumed_folder / FINAL)["model"]["offset_mm"], final["model"]["offset_mm"])
    finally:
        os.environ["lesionnet_results"] = str(dirs / "results")

    # predicted through lesionnet_predict with the trained model
    images = Path(os.environ["lesionnet_raw"]) / DATASET / "imagesTs"
    out = dirs / "predictions"
    assert predict_cli.main(["-i", str(images), "-o", str(out), "-m", NAME, "--no_progress"]) == 0
    doc = read_predictions(out / "predictions.json")
    test_pairs = json.loads((Path(os.environ["lesionnet_raw"]) / DATASET / "pairsTs.json").read_text())
    assert doc["method"] == NAME and doc["folds"] == ["0"] and len(doc["results"]) == len(test_pairs)
    assert all(np.isfinite(predicted_center_zyx(r)).all() for r in doc["results"])


def test_the_registry_checks_what_a_method_claims(registered):
    class Incomplete(Method):
        name, task, trainable = "incomplete", "tracking", True

    REGISTRY["incomplete"] = Incomplete()
    try:
        with pytest.raises(ValueError, match="'incomplete' is trainable but does not define"):
            get_method("incomplete")
    finally:
        del REGISTRY["incomplete"]
    with pytest.raises(ValueError, match="unknown method 'nope'.*offset_tracker"):
        get_method("nope")
    with pytest.raises(ValueError, match="'affine' cannot be trained.*tlt"):
        get_method("affine", capability="train")
