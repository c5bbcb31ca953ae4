"""Shared trainer with TLT: splits, batch stream, augmentation, checkpoints, exact resume, CLI errors, the demo."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from phantoms import FAST_DEFORMABLE, FAST_REGISTRATION

from lesionnet.cli import train as train_cli
from lesionnet.datasets.synthetic import TrackingConfig, generate_tracking_dataset
from lesionnet.methods import REGISTRY
from lesionnet.methods.tlt.maps import lesion_gaussian
from lesionnet.planning import fingerprint as fp_module
from lesionnet.planning.plans_io import load_plans
from lesionnet.preprocessing import preprocess as pre_module
from lesionnet.preprocessing.loading import PreprocessedDataset
from lesionnet.training.batch_stream import SeededBatchLoader, make_batch_stream, whole_batch_draws
from lesionnet.training.checkpoints import BEST, FINAL, LATEST, CheckpointError, load_checkpoint
from lesionnet.training.config import TrainingConfig
from lesionnet.training.pair_augmentation import PairAugmentation, flip_sample
from lesionnet.training.pair_sampling import PairBatchMaker, PairSampler
from lesionnet.training.run_training import FoldJob, configuration_with_preset, train_model, training_output_folder
from lesionnet.training.splits import fold_item_ids, load_or_create_splits, make_patient_splits

DATASET = "Dataset501_SynthLesionTracking"
TINY = dict(num_epochs=3, iterations_per_epoch=2, batch_size=2, learning_rate=1e-3, seed=3, max_val_pairs=4)


TLT = REGISTRY["tlt"]


def _tlt_section(preset: str = "plan") -> dict:
    return configuration_with_preset(TLT, load_plans(501)["configurations"]["tlt"], preset)


def _tlt_data() -> PreprocessedDataset:
    return PreprocessedDataset(501, _tlt_section()["data_identifier"])


def _tiny_job(data: PreprocessedDataset) -> FoldJob:
    pair_ids = [p.pair_id for p in data.pairs()]
    return FoldJob(TLT, _tlt_section("tiny"), data, pair_ids, pair_ids[:2])


def _sampler(data, section, **options) -> PairSampler:
    return PairSampler(data.cached_case, section["template_patch_size_zyx"], section["search_patch_size_zyx"],
                       lesion_gaussian, **options)


# ------------------------------------------------------------------------------------------ splits
def test_patient_splits_keep_patients_together():
    pair_patients = {f"P{p}_{i}": f"P{p}" for p in range(7) for i in range(3)}
    splits = make_patient_splits(pair_patients, num_folds=5, seed=1)
    assert len(splits) == 5
    val_sets = [set(s["val"]) for s in splits]
    assert set().union(*val_sets) == set(pair_patients) and sum(map(len, val_sets)) == len(pair_patients)
    for split in splits:
        train_patients = {pair_patients[p] for p in split["train"]}
        val_patients = {pair_patients[p] for p in split["val"]}
        assert not train_patients & val_patients and split["val"]
    assert make_patient_splits({"a": "P0", "b": "P1"}, num_folds=5)[0]["val"] in (["a"], ["b"])
    with pytest.raises(ValueError, match="at least 2 patients"):
        make_patient_splits({"a": "P0"})
    train, val = fold_item_ids(splits, "all")
    assert val == [] and sorted(train) == sorted(pair_patients)
    with pytest.raises(ValueError, match="fold 7"):
        fold_item_ids(splits, 7)


def test_splits_file_is_created_once_and_validated(tmp_path):
    pair_patients = {f"P{p}_{i}": f"P{p}" for p in range(4) for i in range(2)}
    first = load_or_create_splits(tmp_path, pair_patients)
    custom = [{"train": sorted(set(pair_patients) - {"P1_0", "P1_1"}), "val": ["P1_0", "P1_1"]}]
    (tmp_path / "splits_final.json").write_text(json.dumps(custom))
    assert load_or_create_splits(tmp_path, pair_patients) == custom != first
    # an item in no fold (a patient added after the file was made) is an error naming the patient
    with pytest.raises(ValueError, match="splits_final.json.*patient P4 \\(new\\).*Delete splits_final.json"):
        load_or_create_splits(tmp_path, {**pair_patients, "P4_0": "P4"})
    (tmp_path / "splits_final.json").write_text(json.dumps([{"train": ["nope"], "val": []}]))
    with pytest.raises(ValueError, match="splits_final.json.*nope"):
        load_or_create_splits(tmp_path, pair_patients)


# ------------------------------------------------------------------------------------------ batches
def test_flip_moves_center_with_the_images():
    search = np.zeros((1, 6, 8, 10), np.float32)
    search[0, 1, 2, 3] = 1.0
    sample = {"template": np.zeros((1, 4, 4, 4), np.float32), "template_gaussian": np.zeros((1, 4, 4, 4), np.float32),
              "search": search, "search_prior": search.copy(), "target_center_zyx": np.array([1.0, 2.0, 3.0])}
    flipped = flip_sample(sample, (0, 2))
    z, y, x = np.unravel_index(np.argmax(flipped["search"][0]), (6, 8, 10))
    np.testing.assert_allclose(flipped["target_center_zyx"], [z, y, x])
    np.testing.assert_array_equal(flipped["search_prior"], flipped["search"])
    assert sample["search"][0, 1, 2, 3] == 1.0, "the input is not modified"


def test_batches_are_a_function_of_seed_and_index_in_any_worker(env_501):
    data, cfg = _tlt_data(), _tlt_section()
    maker = PairBatchMaker(_sampler(data, cfg))
    loader = SeededBatchLoader(data.pairs(), maker, 2, seed=5, first_batch=0)
    batches = [next(loader) for _ in range(4)]
    assert [b["batch_index"] for b in batches] == [0, 1, 2, 3]
    b = batches[0]
    assert b["search"].shape == (2, 1, *cfg["search_patch_size_zyx"]) and b["search"].dtype == np.float32
    assert b["template_gaussian"].max() <= 1.0 and b["search_prior"].max() > 0.1
    size = np.array(cfg["search_patch_size_zyx"])
    assert ((b["target_center_zyx"] >= 0) & (b["target_center_zyx"] <= size - 1)).all()
    # a loader starting at batch 2 (a resumed run) sees batches 2, 3
    resumed = SeededBatchLoader(data.pairs(), maker, 2, seed=5, first_batch=2)
    for expected in batches[2:]:
        got = next(resumed)
        for key in ("template", "search", "search_prior", "target_center_zyx"):
            np.testing.assert_array_equal(got[key], expected[key])
    # two batchgenerators worker processes give the same stream
    workers = make_batch_stream(SeededBatchLoader(data.pairs(), maker, 2, seed=5, num_workers=2), 2)
    try:
        for expected in batches:
            got = next(workers)
            assert got["batch_index"] == expected["batch_index"]
            np.testing.assert_array_equal(got["search"], expected["search"])
    finally:
        workers.close()
    other_seed = next(SeededBatchLoader(data.pairs(), maker, 2, seed=6))
    assert not np.array_equal(other_seed["search"], batches[0]["search"])


def test_no_augmentation_keeps_the_target_under_the_label(env_501):
    data = _tlt_data()
    sampler = _sampler(data, _tlt_section(), search_offset_fraction=0.0, template_jitter_voxels=0)
    pair = data.pairs()[0]
    sample = sampler.sample(pair, np.random.default_rng(0))
    target = data.case(pair.target, as_numpy=True)
    start = np.asarray(pair.target_center_zyx) - sample["target_center_zyx"]
    np.testing.assert_allclose(start, np.round(start))
    # the prior Gaussian peaks at the prior center
    peak = np.array(np.unravel_index(np.argmax(sample["search_prior"][0]), sample["search_prior"].shape[1:]))
    assert np.abs(peak + start - np.asarray(pair.prior_center_zyx)).max() <= 1.0
    assert target.image.shape == target.geometry.shape_zyx


# ------------------------------------------------------------------------------------------ trainer
def test_tiny_tlt_overfits_one_batch_through_the_real_data_path(env_501):
    """Crops, Gaussians, labels, coordinates and the loss agree: the tiny TLT fits one fixed batch of real
    samples (no augmentation) to under one voxel of center error, and the focal and L1 terms start on
    comparable scales."""
    data, section = _tlt_data(), _tlt_section("tiny")
    maker = PairBatchMaker(_sampler(data, section, search_offset_fraction=0.25),
                           PairAugmentation(enabled=False))
    batch = maker(data.pairs()[:2], whole_batch_draws(2, 0))
    torch.manual_seed(0)
    model = TLT.build(section)
    inputs = [torch.as_tensor(batch[k]) for k in model.input_keys]
    targets = {k: torch.as_tensor(batch[k]) for k in ("target_center_zyx", "target_radius_mm", "spacing_zyx")}
    optimizer = torch.optim.Adam(model.network.parameters(), lr=3e-3)
    first = None
    for _ in range(300):
        optimizer.zero_grad()
        losses = model.criterion(model.network(*inputs), targets)
        first = first or {k: float(v.detach()) for k, v in losses.items()}
        losses["loss"].backward()
        optimizer.step()
    assert 0.1 < (first["loss"] - first["focal"]) / first["focal"] < 10.0, first
    model.network.eval()
    with torch.no_grad():
        predicted = model.decode(model.network(*inputs))
    error_voxels = (predicted - targets["target_center_zyx"]).abs().max()
    assert error_voxels < 1.0, f"center error {error_voxels:.2f} voxels after overfitting one batch"


def test_training_writes_checkpoints_logs_and_plot(env_501):
    result = train_model(501, TLT, 0, preset="tiny", progress=False, **TINY)
    out = training_output_folder(DATASET, "tlt", 0)
    assert result.output_folder == out
    for name in (LATEST, BEST, FINAL, "training_log.txt", "progress.png", "training_summary.json", "network.json"):
        assert (out / name).is_file(), name
    checkpoint = torch.load(out / FINAL, weights_only=True)
    assert checkpoint["epoch"] == 3 and len(checkpoint["history"]) == 3
    record = checkpoint["history"][-1]
    for key in ("train_loss", "train_focal", "train_l1_mm", "val_med_mm", "val_cpm_10mm", "val_cpm_radius",
                "learning_rate", "epoch_seconds"):
        assert key in record, key
    assert 0.0 <= record["val_cpm_10mm"] <= 100.0 and record["val_med_mm"] >= 0.0
    best = load_checkpoint(out / BEST)["best_metric"]
    assert best["name"] == "val_med_mm" and best["mode"] == "min"
    assert best["value"] == min(h["val_med_mm"] for h in checkpoint["history"]) == result.best_metric["value"]
    network_info = json.loads((out / "network.json").read_text())
    assert network_info["configuration"] == checkpoint["configuration"] == _tlt_section("tiny")
    assert network_info["data_configuration"]["target_spacing_zyx"]
    log = (out / "training_log.txt").read_text()
    assert "epoch 2:" in log and "Finished" in log and "untrained network: val_cpm_10mm" in log
    # the untrained network's validation is recorded next to the final one (what training adds)
    summary = json.loads((out / "training_summary.json").read_text())
    assert set(summary["untrained"]) == {k for k in record if k.startswith("val_")}
    assert checkpoint["initial_validation"] == summary["untrained"]
    splits = json.loads((Path(os.environ["lesionnet_preprocessed"]) / DATASET / "splits_final.json").read_text())
    patients = {p.patient for p in _tlt_data().pairs()}
    assert checkpoint["metadata"]["fold"] == "0" and len(splits) == min(5, len(patients)) == 3


def test_seeded_runs_are_identical_and_resume_is_exact(env_501, monkeypatch):
    data = _tlt_data()
    from lesionnet.training.trainer import Trainer

    def run(folder, resume=False, method=None, **overrides):
        config = TrainingConfig(**{**TINY, **overrides})
        return Trainer(method or _tiny_job(data), config, folder, resume=resume, progress=False).run()

    run(env_501 / "a")
    run(env_501 / "b")
    a = load_checkpoint(env_501 / "a" / FINAL)["model"]
    b = load_checkpoint(env_501 / "b" / FINAL)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a), "same seed, same weights"

    # interrupt during epoch 2 (after checkpoint_latest of epoch 1), then continue
    method = _tiny_job(data)
    real = method.compute_loss
    calls = []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 2 * TINY["iterations_per_epoch"] + 1:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(method, "compute_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(env_501 / "c", method=method)
    assert load_checkpoint(env_501 / "c" / LATEST)["epoch"] == 2 and not (env_501 / "c" / FINAL).exists()
    run(env_501 / "c", resume=True)
    c = load_checkpoint(env_501 / "c" / FINAL)
    assert all(torch.equal(a[k], c["model"][k]) for k in a), "resumed run ends with the uninterrupted weights"
    assert [h["epoch"] for h in c["history"]] == [0, 1, 2]


def test_truncated_checkpoint_is_a_clear_error_never_a_restart(env_501, capsys):
    args = ["501", "tlt", "0", "--preset", "tiny", "--epochs", "1", "--iterations", "1", "--max_val_pairs", "2",
            "--no_progress"]
    assert train_cli.main(args) == 0
    latest = training_output_folder(DATASET, "tlt", 0) / LATEST
    truncated = latest.read_bytes()[: latest.stat().st_size // 2]
    latest.write_bytes(truncated)
    with pytest.raises(CheckpointError, match="checkpoint_latest.pth"):
        load_checkpoint(latest)
    assert train_cli.main(args + ["--c"]) == 1
    assert "checkpoint_latest.pth: cannot read this checkpoint" in capsys.readouterr().err
    assert latest.read_bytes() == truncated, "nothing was trained or overwritten"
    assert not (latest.parent / FINAL).stat().st_mtime_ns > latest.stat().st_mtime_ns


def test_cli_errors(env_501, capsys):
    assert train_cli.main(["501", "tlt", "9", "--preset", "tiny", "--epochs", "1", "--no_progress"]) == 1
    assert "fold 9" in capsys.readouterr().err
    assert train_cli.main(["501", "tlt", "0", "--plans", "nope", "--no_progress"]) == 1
    assert "nope.json" in capsys.readouterr().err


def _max_weight_differences(a: dict, b: dict) -> dict:
    """``{tensor name: max |a - b|}`` of the tensors that are not bit-identical."""
    return {k: float((a[k].float() - b[k].float()).abs().max()) for k in a if not torch.equal(a[k], b[k])}


def test_killed_training_continues_with_c_where_it_stopped(env_501, tmp_path):
    """A real kill (SIGKILL) of lesionnet_train mid-epoch, then ``--c``, beside an uninterrupted run.

    What a continuation must keep is checked on values that float rounding cannot change: the epoch it
    starts from, the killed run's own epoch records, Adam's step count (a lost optimizer state restarts
    it), the learning rates, and the loss of the first continued epoch (another batch stream changes it by
    percents, rounding by far less than 1e-3). Bit-identical weights across processes are not required
    here: on some CPUs a fresh process rounds differently (e.g. MKL and memory alignment), and Adam
    amplifies a difference of 1e-11 to about the learning rate, as large as what a lost optimizer state
    gives. The in-process resume test requires bit-identical weights."""
    epochs, iterations = 4, 6
    base = [sys.executable, "-m", "lesionnet.cli.train", "501", "tlt", "0", "--preset", "tiny", "--epochs",
            str(epochs), "--iterations", str(iterations), "--seed", "1", "--threads", "1", "--max_val_pairs", "2",
            "--no_progress"]
    env = dict(os.environ, MKL_CBWR="AUTO,STRICT")
    folder = training_output_folder(DATASET, "tlt", 0)
    subprocess.run(base, env=dict(env, lesionnet_results=str(tmp_path / "reference")), check=True,
                   capture_output=True, timeout=300)
    reference = load_checkpoint(tmp_path / "reference" / DATASET / folder.parent.name / "fold_0" / FINAL)

    process = subprocess.Popen(base, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        latest = folder / LATEST
        if latest.exists() and load_checkpoint(latest)["epoch"] >= 1:
            break
        time.sleep(0.05)
    assert process.poll() is None, "training finished before it could be killed; make it longer"
    time.sleep(0.3)                                      # well inside the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (folder / FINAL).exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "no temporary file left behind"
    killed = load_checkpoint(folder / LATEST)
    start = killed["epoch"]
    assert 1 <= start < epochs
    continued = subprocess.run(base + ["--c"], env=env, check=True, capture_output=True, text=True, timeout=300)
    assert f"epoch {start} of {epochs}" in continued.stderr, "--c continues from the last checkpoint"
    resumed = load_checkpoint(folder / FINAL)
    history, reference_history = resumed["history"], reference["history"]
    # the epochs before the kill are the killed run's own records (their timings included), not a rerun
    assert history[:start] == killed["history"]
    assert [h["epoch"] for h in history] == list(range(epochs))
    assert [h["learning_rate"] for h in history] == [h["learning_rate"] for h in reference_history]
    steps = {float(state["step"]) for state in resumed["optimizer"]["state"].values()}
    assert steps == {float(epochs * iterations)}, f"Adam's state was not continued: steps {steps}"
    first, expected = history[start]["train_loss"], reference_history[start]["train_loss"]
    assert abs(first - expected) <= 1e-3 * abs(expected), (
        f"epoch {start} continued from other weights or batches than the uninterrupted run: loss {first} vs {expected}")
    differing = _max_weight_differences(reference["model"], resumed["model"])
    if differing:
        warnings.warn(f"continued from epoch {start}, the weights differ from the uninterrupted run's in another "
                      f"process by up to {max(differing.values()):.2g} (float rounding amplified by Adam)")


# ------------------------------------------------------------------------------------------ predict with TLT
def test_predict_finds_the_trained_model_and_writes_heatmaps(env_501, tmp_path, monkeypatch, capsys):
    from lesionnet.cli import predict as predict_cli
    from lesionnet.datasets.prediction_format import read_predictions

    images = Path(os.environ["lesionnet_raw"]) / DATASET / "imagesTs"
    out = tmp_path / "pred"
    assert predict_cli.main(["-i", str(images), "-o", str(out), "-m", "tlt", "--no_progress"]) == 1
    error = capsys.readouterr().err
    assert "no trained model" in error and "lesionnet_train" in error

    train_model(501, TLT, 0, preset="tiny", progress=False, **{**TINY, "num_epochs": 1})
    assert predict_cli.main(["-i", str(images), "-o", str(out), "-m", "tlt", "--save_heatmaps", "--checkpoint", "best",
                             "--no_progress"]) == 0
    predictions = read_predictions(out / "predictions.json")
    raw_pairs = json.loads((Path(os.environ["lesionnet_raw"]) / DATASET / "pairsTs.json").read_text())
    assert predictions["method"] == "tlt" and predictions["folds"] == ["0"]
    assert len(predictions["results"]) == len(raw_pairs)
    for record in predictions["results"]:
        assert np.isfinite(record["predict target center"]).all()
        heatmap = out / "heatmaps" / f"{record['pair_id']}.nii.gz"
        assert heatmap.is_file()
    # chained prediction runs through the same tracker
    assert predict_cli.main(["-i", str(images), "-o", str(tmp_path / "chain"), "-m", "tlt", "--chain", "-f", "0",
                             "--no_progress"]) == 0
    chained = read_predictions(tmp_path / "chain" / "predictions.json")
    assert chained["method"] == "tlt+chain" and all("chain" in r for r in chained["results"])
    # a second trained model makes the choice ambiguous: the error lists both
    second = training_output_folder(DATASET, "tlt", 0, plans_name="other_plans")
    second.mkdir(parents=True)
    (second / FINAL).write_bytes((training_output_folder(DATASET, "tlt", 0) / FINAL).read_bytes())
    capsys.readouterr()
    assert predict_cli.main(["-i", str(images), "-o", str(tmp_path / "x"), "-m", "tlt", "--no_progress"]) == 1
    error = capsys.readouterr().err
    assert "2 trained models" in error and "other_plans" in error
    assert predict_cli.main(["-i", str(images), "-o", str(tmp_path / "y"), "-m", "tlt", "--plans", "lesionnet_plans",
                             "-f", "3", "--no_progress"]) == 1
    assert "fold(s) 3" in capsys.readouterr().err


def test_demo_runs_the_main_job_end_to_end(lesionnet_dirs, monkeypatch, capsys):
    """lesionnet_demo on a tiny Dataset501: plan, preprocess, train a tiny TLT and tiny DLTs (its three modes),
    compare them with the baselines."""
    from lesionnet.cli import demo

    monkeypatch.setattr(fp_module, "PRIOR_ERROR_REGISTRATION", FAST_REGISTRATION)
    monkeypatch.setattr(fp_module, "DEFORMABLE_PRIOR", FAST_DEFORMABLE)
    monkeypatch.setattr(fp_module, "DEFAULT_PRIOR_REGISTRATION", FAST_REGISTRATION)
    monkeypatch.setattr(pre_module, "DEFAULT_PRIOR_REGISTRATION", FAST_REGISTRATION)
    generate_tracking_dataset(lesionnet_dirs["raw"] / DATASET,
                              TrackingConfig(num_patients=4, nominal_shape_zyx=(16, 40, 40)), seed=0, progress=False)
    monkeypatch.setattr(TLT, "demo_training", {"preset": "tiny", "num_epochs": 1, "iterations_per_epoch": 2,
                                               "batch_size": 2, "learning_rate": 1e-3, "max_val_pairs": 2, "seed": 0})
    for name in ("dlt", "dlt_ssl", "dlt_mix"):
        monkeypatch.setattr(REGISTRY[name], "demo_training", {**TLT.demo_training, "preset": "tiny"})
    assert demo.main(["--task", "tracking", "--no_progress"]) == 0
    out = capsys.readouterr().out
    rows = ["identity", "affine", "deformable", "matcher", "tlt_untrained", "tlt", "dlt_untrained", "dlt",
            "dlt_ssl_untrained", "dlt_ssl", "dlt_mix_untrained", "dlt_mix"]
    for row in rows:
        assert f"| {row} |" in out
    assert "tlt training (tiny preset, fold 0)" in out
    assert "tlt on the fold-0 validation pairs, untrained -> trained: CPM@10mm" in out
    assert "tlt vs tlt_untrained (" in out and "tlt vs matcher (" in out and "paired t-test" in out
    results = json.loads((lesionnet_dirs["results"] / DATASET / "demo" / "comparison.json").read_text())
    assert list(results["methods"]) == rows
    baselines = ["identity", "affine", "deformable", "matcher"]
    assert [(c["a"], c["b"]) for c in results["comparisons"]] == [
        (name, other) for name in ("tlt", "dlt", "dlt_ssl", "dlt_mix") for other in [f"{name}_untrained", *baselines]]
    assert results["training"]["tlt"]["seconds"] > 0
    assert set(results["training"]["tlt"]["validation"]) == {"untrained", "trained"}
    # a second run reuses the model and still reports its training time and validation
    assert demo.main(["--task", "tracking", "--no_progress"]) == 0
    again = json.loads((lesionnet_dirs["results"] / DATASET / "demo" / "comparison.json").read_text())
    assert again["training"]["tlt"]["seconds"] > 0
    assert again["training"]["tlt"]["validation"] == results["training"]["tlt"]["validation"]
