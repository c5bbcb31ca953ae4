"""LN-Tracker end to end on a tiny Dataset502: planned, trained through ``lesionnet_train``, resumed exactly
after an interruption, validated with the detection metrics; whole-volume inference (Algorithm 1 and the
merging baseline) and its non-maximum suppression."""
from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pytest
import torch
from conftest import use_preprocessed

from lesionnet.cli import plan_and_preprocess
from lesionnet.cli import train as train_cli
from lesionnet.datasets.synthetic import generate_lymph_node_dataset
from lesionnet.datasets.synthetic.lymph_node_config import LymphNodeConfig
from lesionnet.methods import REGISTRY
from lesionnet.methods.lntracker.inference import merge_volume, track_volume
from lesionnet.methods.lntracker.network import LNTrackerConfig, build_lntracker
from lesionnet.planning.plans_io import load_plans
from lesionnet.preprocessing.loading import PreprocessedDataset
from lesionnet.training.checkpoints import FINAL, LATEST, load_checkpoint
from lesionnet.training.config import TrainingConfig
from lesionnet.training.run_training import FoldJob, configuration_with_preset, train_model, training_output_folder
from lesionnet.training.trainer import Trainer

DATASET = "Dataset502_SynthLymphNodes"
LNTRACKER = REGISTRY["lntracker"]


@pytest.fixture(scope="module")
def preprocessed_502(tmp_path_factory):
    root = tmp_path_factory.mktemp("lntracker")
    dirs = {name: root / name for name in ("raw", "preprocessed", "results")}
    generate_lymph_node_dataset(dirs["raw"] / DATASET, LymphNodeConfig(num_patients=6, shape_zyx=(10, 48, 48)),
                                seed=0, progress=False)
    with pytest.MonkeyPatch.context() as patch:
        for name, folder in dirs.items():
            patch.setenv(f"lesionnet_{name}", str(folder))
        assert plan_and_preprocess.main(["-d", "502", "-np", "1", "--gpu_memory_gb", "4", "--no_progress"]) == 0
    return dirs


@pytest.fixture
def env_502(preprocessed_502, tmp_path, monkeypatch):
    use_preprocessed(monkeypatch, preprocessed_502, tmp_path / "results")
    return tmp_path / "results"


def _tiny_section() -> dict:
    return configuration_with_preset(LNTRACKER, load_plans(502)["configurations"]["lntracker"], "tiny")


def test_tiny_lntracker_trains_through_the_command(env_502):
    args = ["502", "lntracker", "0", "--preset", "tiny", "--epochs", "2", "--iterations", "3", "--no_progress"]
    assert train_cli.main(args) == 0
    checkpoint = load_checkpoint(training_output_folder(DATASET, "lntracker", 0) / FINAL)
    record = checkpoint["history"][-1]
    assert {"train_focal", "train_l1", "train_giou", "train_similarity", "val_AS", "val_AP@0.1"} <= set(record)
    assert checkpoint["best_metric"]["name"] == "val_AS"
    assert all(np.isfinite(record[k]) for k in record if k.startswith("train_"))


def test_interrupted_training_resumes_to_the_same_weights(env_502, monkeypatch):
    section = _tiny_section()
    data = PreprocessedDataset(502, section["data_identifier"])
    scans = data.scan_ids
    config = dict(num_epochs=3, iterations_per_epoch=2, batch_size=2, learning_rate=2e-4, optimizer="adamw",
                  seed=4, max_val_pairs=1, augmentation={"enabled": True})

    def run(folder, resume=False, job=None):
        job = job or FoldJob(LNTRACKER, section, data, scans[1:], scans[:1])
        return Trainer(job, TrainingConfig(**config), folder, resume=resume, progress=False).run()

    run(env_502 / "a")
    job = FoldJob(LNTRACKER, section, data, scans[1:], scans[:1])
    real, calls = job.compute_loss, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 2 * config["iterations_per_epoch"] + 1:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(job, "compute_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(env_502 / "b", job=job)
    assert load_checkpoint(env_502 / "b" / LATEST)["epoch"] == 2
    run(env_502 / "b", resume=True)
    a, b = (load_checkpoint(env_502 / name / FINAL)["model"] for name in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed run ends with the uninterrupted weights"


def test_volume_inference_returns_boxes_inside_the_scan():
    torch.manual_seed(0)
    network = build_lntracker(LNTrackerConfig(num_input_slices=3, hidden_dim=32, encoder_layers=1, decoder_layers=1,
                                              num_queries=6, backbone_widths=(8, 16, 32), ffn_dim=32)).eval()
    torch.nn.init.constant_(network.score_head.bias, 5.0)            # every query detects, every track survives
    image = np.random.default_rng(0).normal(size=(5, 20, 27)).astype(np.float32)
    thresholds = {"tau_det": 0.3, "tau_track": 0.3, "tau_sim": 0.0}
    tracklets = track_volume(network, image, 1, thresholds)
    assert tracklets and all(t.last_slice == 4 for t in tracklets), "no track is closed: every one reaches the top"
    assert any(t.first_slice == 0 for t in tracklets)
    for t in tracklets:
        boxes = np.stack(t.boxes)
        assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= 27).all() and (boxes[:, [1, 3]] <= 20).all()
    merged = merge_volume(network, image, 1, thresholds)
    assert merged and all(0 <= box[2] < box[5] <= 5 for box, _ in merged)


def test_predict_writes_what_evaluate_detection_reads(env_502, preprocessed_502, tmp_path, capsys):
    from lesionnet.cli import evaluate_detection, predict

    args = ["502", "lntracker", "0", "--preset", "tiny", "--epochs", "1", "--iterations", "1", "--no_progress"]
    assert train_cli.main(args) == 0
    images = preprocessed_502["raw"] / DATASET / "imagesTs"
    out = tmp_path / "boxes"
    assert predict.main(["-i", str(images), "-o", str(out), "-m", "lntracker", "--save_overlays", "--no_progress"]) == 0
    scans = sorted(p.name[: -len("_0000.nii.gz")] for p in images.glob("*_0000.nii.gz"))
    assert sorted(p.name for p in (out / "overlays").iterdir()) == [f"{s}.png" for s in scans]
    assert matplotlib.image.imread(out / "overlays" / f"{scans[0]}.png").shape[2] in (3, 4)
    assert sorted(p.stem for p in out.glob("*.json")) == scans
    assert sorted(p.name for p in (out / "markups").iterdir()) == [f"{s}.mrk.json" for s in scans]
    record = json.loads((out / f"{scans[0]}.json").read_text())
    assert {"boxes_xyz", "scores", "slice_ranges", "boxes_world", "signature"} <= set(record)
    capsys.readouterr()
    assert evaluate_detection.main([str(out), str(preprocessed_502["raw"] / DATASET / "labelsTs")]) == 0
    assert "| AS |" in capsys.readouterr().out
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert predict.main(["-i", str(images), "-o", str(out), "-m", "lntracker", "--no_progress"]) == 1
    assert "earlier run" in capsys.readouterr().err
    assert predict.main(["-i", str(images), "-o", str(out), "-m", "lntracker", "--continue", "--no_progress"]) == 0
    assert f"({len(scans)} reused)" in capsys.readouterr().out
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}, "nothing was predicted again"
    assert predict.main(["-i", str(images), "-o", str(out), "-m", "lntracker", "--chain"]) == 1
    assert "tracking options" in capsys.readouterr().err

    # num_processes=2: the scans detected in two spawned workers, written here: the same boxes, scores and
    # signatures as in one process (thresholds 0: every query is a box, so there are boxes to compare)
    from lesionnet.inference.predict_detection import predict_detection

    training_images = preprocessed_502["raw"] / DATASET / "imagesTr"
    loose = {"thresholds": {"tau_det": 0.0, "tau_track": 0.0}}
    runs = {n: predict_detection(training_images, tmp_path / f"np{n}", LNTRACKER, progress=False,
                                 predictor_options=loose, num_processes=n) for n in (1, 2)}
    assert len(runs[2].predicted) == len(runs[1].predicted) >= 2
    for scan in runs[1].predicted:
        one, two = (json.loads((tmp_path / f"np{n}" / f"{scan}.json").read_text()) for n in (1, 2))
        assert len(one["scores"]) > 0 and two["signature"] == one["signature"]
        np.testing.assert_allclose(two["scores"], one["scores"], atol=1e-4)
        np.testing.assert_allclose(two["boxes_xyz"], one["boxes_xyz"], atol=1e-3)


def test_demo_detection_part(lesionnet_dirs, monkeypatch, capsys):
    """lesionnet_demo --task detection on a tiny Dataset502: train a tiny LN-Tracker, compare it with its
    untrained network, the merging baseline and Algorithm 1 as printed on the test scans."""
    from lesionnet.cli import demo

    generate_lymph_node_dataset(lesionnet_dirs["raw"] / DATASET,
                                LymphNodeConfig(num_patients=6, shape_zyx=(10, 48, 48)), seed=0, progress=False)
    monkeypatch.setattr(LNTRACKER, "demo_training", {"preset": "tiny", "num_epochs": 1, "iterations_per_epoch": 2,
                                                     "batch_size": 2, "max_val_pairs": 1, "seed": 0})
    assert demo.main(["--task", "detection", "--no_progress"]) == 0
    out = capsys.readouterr().out
    rows = ["lntracker_untrained", "lntracker", "lntracker_merging", "lntracker_algorithm1"]
    for row in rows:
        assert f"| {row} |" in out
    assert "lntracker vs lntracker_merging at ≤ 4 FP/scan" in out and "McNemar" in out
    assert "lntracker on the fold-0 validation scans, untrained -> trained: AS" in out
    results = json.loads((lesionnet_dirs["results"] / DATASET / "demo" / "comparison.json").read_text())
    assert list(results["rows"]) == rows
    assert results["n_lesions"] > 0 and results["training"]["lntracker"]["seconds"] > 0


def test_ablation_presets():
    section = {"num_input_slices": 3, "hidden_dim": 32, "encoder_layers": 1, "decoder_layers": 1, "num_queries": 8,
               "thresholds": {"tau_det": 0.3, "tau_track": 0.3, "tau_sim": 0.5}}
    masked = configuration_with_preset(LNTRACKER, section, "small_no_mask")
    assert LNTRACKER.build(masked).network.config.attention_mask is False
    plain = configuration_with_preset(LNTRACKER, section, "small_no_similarity")
    assert LNTRACKER.build(plain).criterion.weights.similarity == 0.0
    assert plain["thresholds"] == {"tau_det": 0.3, "tau_track": 0.3, "tau_sim": 0.0}
    assert LNTRACKER.build(configuration_with_preset(LNTRACKER, section, "small")).network.config.attention_mask


def test_lntracker_trains_on_two_processes_with_identical_replicas(env_502, tmp_path):
    """LN-Tracker under data-parallel training (gloo): identical replicas after every step; the sharded
    validation gives the detection metrics."""
    result = train_model(502, LNTRACKER, 0, preset="tiny", progress=False, output_folder=tmp_path / "ddp",
                         num_processes=2, check_replicas=True, threads_per_process=1, num_epochs=1,
                         iterations_per_epoch=2, batch_size=2, max_val_pairs=2)
    final = load_checkpoint(result.output_folder / FINAL)
    # the gathered shards give what one process validating every scan gives with the final weights
    section = _tiny_section()
    data = PreprocessedDataset(502, section["data_identifier"])
    val_ids = json.loads((data.folder.parent / "splits_final.json").read_text())[0]["val"][:2]
    model = LNTRACKER.build(section)
    model.network.load_state_dict(final["model"])
    model.network.eval()
    expected = LNTRACKER.validate(model, data, val_ids, section, torch.device("cpu"))
    assert expected and {f"val_{k}": v for k, v in expected.items()} == \
        {k: v for k, v in final["history"][-1].items() if k.startswith("val_")}
