"""No trained model, prediction or dataset is ever overwritten or mixed: each guard driven through the commands.

Every check runs the public command in a subprocess on a tiny Dataset501 made on the fly and asserts the
exit status, one clear message naming the file or patient (no traceback), and that no existing
checkpoint, prediction or dataset file changed (bytes and modification times).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from phantoms import FAST_DEFORMABLE, FAST_REGISTRATION

from lesionnet.cli import plan_and_preprocess
from lesionnet.datasets.synthetic import TrackingConfig, generate_tracking_dataset
from lesionnet.inference.case_signature import signature_differences
from lesionnet.inference.predict_tracking import predict_tracking
from lesionnet.methods import REGISTRY
from lesionnet.planning import fingerprint as fp_module
from lesionnet.preprocessing import preprocess as pre_module
from lesionnet.training.checkpoints import FINAL, LATEST, UNTRAINED, load_checkpoint
from lesionnet.training.run_training import train_model

DATASET = "Dataset501_SynthLesionTracking"
FOLD = Path(DATASET) / "tlt__lesionnet_plans" / "fold_0"
TINY_ARGS = ["--preset", "tiny", "--epochs", "1", "--iterations", "1", "--max_val_pairs", "2", "--no_progress"]
TRAIN = ["501", "tlt", "0", *TINY_ARGS]
TESTS = Path(__file__).resolve().parent


def _patch_fast_registration(mp) -> None:
    mp.setattr(fp_module, "PRIOR_ERROR_REGISTRATION", FAST_REGISTRATION)
    mp.setattr(fp_module, "DEFORMABLE_PRIOR", FAST_DEFORMABLE)
    mp.setattr(fp_module, "DEFAULT_PRIOR_REGISTRATION", FAST_REGISTRATION)
    mp.setattr(pre_module, "DEFAULT_PRIOR_REGISTRATION", FAST_REGISTRATION)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny Dataset501 (4 patients), planned, preprocessed and trained (tiny TLT, fold 0) once."""
    root = tmp_path_factory.mktemp("safety501")
    dirs = {name: root / name for name in ("raw", "preprocessed", "results")}
    with pytest.MonkeyPatch.context() as mp:
        for name, folder in dirs.items():
            mp.setenv(f"lesionnet_{name}", str(folder))
        _patch_fast_registration(mp)
        generate_tracking_dataset(dirs["raw"] / DATASET, TrackingConfig(num_patients=4, nominal_shape_zyx=(16, 40, 40)),
                                  seed=0, progress=False)
        assert plan_and_preprocess.main(["-d", "501", "-np", "1", "--gpu_memory_gb", "2", "--no_progress"]) == 0
        train_model(501, REGISTRY["tlt"], 0, preset="tiny", progress=False, num_epochs=1, iterations_per_epoch=1,
                    max_val_pairs=2)
    return dirs


def _env(dirs: dict, **overrides) -> dict:
    env = dict(os.environ, **{f"lesionnet_{name}": str(folder) for name, folder in dirs.items()})
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def _run(command: str, args: list, env: dict, expect: int, timeout: float = 240) -> str:
    """Run ``python -m lesionnet.cli.<command> args``; assert the exit status and no traceback; its output."""
    done = subprocess.run([sys.executable, "-m", f"lesionnet.cli.{command}", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == expect, output
    assert "Traceback" not in output, output
    return output


def _run_together(calls: list) -> list[str]:
    """:func:`_run` for several ``(command, args, env, expect)`` at once (independent checks, in parallel)."""
    processes = [(subprocess.Popen([sys.executable, "-m", f"lesionnet.cli.{command}", *map(str, args)], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), expect)
                 for command, args, env, expect in calls]
    outputs = []
    for process, expect in processes:
        output = process.communicate(timeout=240)[0]
        assert process.returncode == expect, output
        assert "Traceback" not in output, output
        outputs.append(output)
    return outputs


def _snapshot(folder: Path) -> dict:
    """``{relative path: (bytes, mtime_ns)}`` of every file under ``folder``."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _wait_for(condition, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and process.poll() is None and not condition():
        time.sleep(0.05)
    assert process.poll() is None, "the command finished before it could be killed"
    assert condition(), "the command did not get there in time"


# ------------------------------------------------------------------------------------------ training
def test_a_fold_with_a_model_is_never_changed_without_c_or_overwrite(trained):
    fold = trained["results"] / FOLD
    before = _snapshot(fold)
    env = _env(trained)
    plain, preset, epochs_lr = _run_together([
        ("train", TRAIN, env, 1),                                       # no --c, no --overwrite
        ("train", [*TRAIN, "--c", "--preset", "small"], env, 1),        # --c with another preset
        ("train", [*TRAIN, "--c", "--epochs", "2", "--lr", "0.5"], env, 1)])   # --c, more epochs, another lr
    assert f"{fold}: this fold already holds a trained model" in plain and "checkpoint_final.pth" in plain
    assert "--c" in plain and "--overwrite" in plain
    assert str(fold / LATEST) in preset and "preset (--preset): checkpoint 'tiny', requested 'small'" in preset
    assert "configuration.network." in preset and "--overwrite" in preset
    assert "num_epochs (--epochs): checkpoint 1, requested 2" in epochs_lr
    assert "learning_rate (--lr): checkpoint 0.0001, requested 0.5" in epochs_lr
    assert _snapshot(fold) == before, "no file of the fold (network.json, log, checkpoints) changed"
    with pytest.MonkeyPatch.context() as mp:
        for name, folder in trained.items():
            mp.setenv(f"lesionnet_{name}", str(folder))
        # --c with the same settings on a finished fold: nothing to do, nothing rewritten
        result = train_model(501, REGISTRY["tlt"], 0, preset="tiny", resume=True, progress=False, num_epochs=1,
                             iterations_per_epoch=1, max_val_pairs=2)
        assert result.epochs_run == 0 and result.best_metric["value"] is not None
        with pytest.raises(ValueError, match="exclude each other"):
            train_model(501, REGISTRY["tlt"], 0, preset="tiny", resume=True, overwrite=True, progress=False)
    assert _snapshot(fold) == before


def test_overwrite_replaces_the_model_only_after_the_new_runs_first_checkpoint(trained, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(trained["results"], results)
    fold = results / FOLD
    before = _snapshot(fold)
    env = _env(trained, lesionnet_results=results)
    args = [sys.executable, "-m", "lesionnet.cli.train", *TRAIN, "--overwrite", "--seed", "5", "--threads", "1"]
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staged = lambda: any((p / UNTRAINED).is_file() for p in fold.parent.glob(".fold_0.staging-*"))  # noqa: E731
    _wait_for(staged, process)
    process.send_signal(signal.SIGKILL)                  # killed before the new run's first checkpoint
    process.wait()
    assert _snapshot(fold) == before, "the old model is intact, nothing of the new run is mixed in"
    assert [p.name for p in fold.parent.iterdir() if p.name.startswith(".fold_0.staging-")]

    out = _run("train", [*TRAIN, "--overwrite", "--seed", "5"], env, expect=0)
    assert "Removed" in out and "staging" in out, "the killed run's staging folder is removed by the next run"
    assert _hidden(fold.parent) == [], "no staging or replaced folder is left"
    new = load_checkpoint(fold / FINAL)
    assert new["training_config"]["seed"] == 5 and new["epoch"] == 1
    for name in (LATEST, UNTRAINED, "network.json", "training_log.txt"):
        assert (fold / name).stat().st_mtime_ns > before[name][1], f"{name} is the new run's"
    assert "starting over" not in (fold / "training_log.txt").read_text()


def test_splits_made_before_a_patient_was_added_name_the_patient(trained, tmp_path):
    preprocessed = tmp_path / "preprocessed"
    shutil.copytree(trained["preprocessed"], preprocessed)
    splits_path = preprocessed / DATASET / "splits_final.json"
    splits = json.loads(splits_path.read_text())
    left_out = "P0001"
    splits = [{key: [i for i in fold[key] if not i.startswith(left_out)] for key in ("train", "val")}
              for fold in splits]
    splits_path.write_text(json.dumps(splits))
    before = splits_path.read_bytes()
    out = _run("train", TRAIN, _env(trained, lesionnet_preprocessed=preprocessed, lesionnet_results=tmp_path / "r"),
               expect=1)
    assert str(splits_path) in out and f"patient {left_out} (new)" in out
    assert "Delete splits_final.json" in out and "add the items" in out
    assert splits_path.read_bytes() == before and not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------------ prediction
@pytest.fixture(scope="module")
def predicted(trained, tmp_path_factory):
    """``lesionnet_predict -m tlt`` on the test scans with the trained fold."""
    out = tmp_path_factory.mktemp("predicted") / "out"
    images = trained["raw"] / DATASET / "imagesTs"
    _run("predict", ["-i", images, "-o", out, "-m", "tlt", "--no_progress"], _env(trained), expect=0)
    return images, out


def test_predict_refuses_an_output_folder_with_earlier_predictions_or_a_file(trained, predicted, tmp_path):
    images, out = predicted
    before = _snapshot(out)
    env = _env(trained)
    a_file = tmp_path / "predictions_here.json"
    a_file.write_text("{}")
    earlier, output = _run_together([("predict", ["-i", images, "-o", out, "-m", "tlt", "--no_progress"], env, 1),
                                     ("predict", ["-i", images, "-o", a_file, "-m", "tlt", "--no_progress"], env, 1)])
    assert f"{out}: holds the predictions of an earlier run" in earlier
    assert "--continue" in earlier and "--overwrite" in earlier
    assert f"{a_file}: the output folder (-o) is an existing file" in output
    assert "Using" not in output, "checked before the model was loaded or anything registered"
    assert a_file.read_text() == "{}" and _snapshot(out) == before


def test_continue_predicts_again_the_cases_whose_checkpoint_changed(trained, predicted, tmp_path):
    images, out = predicted
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    env = _env(trained)
    output = _run("predict", ["-i", images, "-o", copy, "-m", "tlt", "--continue", "--checkpoint", "best",
                              "--no_progress"], env, expect=0)
    assert "2 cases predicted, 0 reused" in output and "checkpoint changed ('final' -> 'best')" in output
    assert "predicting P0003_T0__P0003_T1.json again" in output
    assert json.loads((copy / "predictions.json").read_text())["checkpoint"] == "best"


def test_signature_names_what_changed():
    run = {"method": "tlt", "model_folder": "/r1/m", "checkpoint_sha256": {"0": "a"}, "step_size": 0.5,
           "description": {"model": "/r1/m", "folds": ["0"], "checkpoint": "final"}}
    stored = {"run": run, "scans": {"A": {"size": 1, "mtime_ns": 1}}, "pairs": [{"pair_id": "p"}]}
    assert signature_differences(stored, stored) == []
    moved = {**stored, "run": {**run, "model_folder": "/r2/m", "description": {**run["description"], "folds": ["1"]}}}
    reasons = signature_differences(stored, moved)
    assert "model folder changed" in reasons and "folds changed (['0'] -> ['1'])" in reasons
    assert signature_differences(None, stored) == ["the case file has no signature (written by an older lesionnet)"]


def test_continue_predicts_again_the_cases_of_a_changed_scan_and_overwrite_replaces(trained, tmp_path):
    images = tmp_path / "in"
    shutil.copytree(trained["raw"] / DATASET / "imagesTs", images)
    shutil.copy(trained["raw"] / DATASET / "pairsTs.json", images / "pairs.json")
    out = tmp_path / "out"
    env = _env(trained)
    base = ["-i", images, "-o", out, "-m", "identity", "--no_progress"]
    predict_tracking(images, out, REGISTRY["identity"], progress=False)
    scan = sorted(images.glob("*_0000.nii.gz"))[0]
    os.utime(scan, ns=(scan.stat().st_atime_ns, scan.stat().st_mtime_ns + 10**9))     # the scan was replaced
    output = _run("predict", [*base, "--continue"], env, expect=0)
    assert f"scan file(s) changed: {scan.name[:-len('_0000.nii.gz')]}" in output
    assert "2 cases predicted, 0 reused" in output
    (out / "cases" / "stale__case.json").write_text("{}")
    output = _run("predict", [*base, "--overwrite"], env, expect=0)
    assert "removed the earlier run's cases/" in output and not (out / "cases" / "stale__case.json").exists()


# ------------------------------------------------------------------------------------------ synthetic data
def test_killed_make_synthetic_overwrite_leaves_the_dataset_and_its_staging_is_removed(tmp_path):
    raw = tmp_path / "raw"
    env = _env({"raw": raw, "preprocessed": tmp_path / "p", "results": tmp_path / "r"})
    make = ["-d", "501", "--num_patients", "3", "--shape", "16", "40", "40", "--no_progress"]
    dataset = raw / DATASET
    generate_tracking_dataset(dataset, TrackingConfig(num_patients=3, nominal_shape_zyx=(16, 40, 40)), progress=False)
    before = _snapshot(dataset)
    args = [sys.executable, "-m", "lesionnet.cli.make_synthetic", *make, "--overwrite", "--seed", "1"]
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: any(raw.glob(f".tmp-{DATASET}-*/imagesTr/*")), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _hidden(raw) and _snapshot(dataset) == before
    output = _run("make_synthetic", make, env, expect=1)          # the next run, even one that stops
    assert "already exists" in output and f".tmp-{DATASET}-" in output
    assert _hidden(raw) == [] and _snapshot(dataset) == before


# ------------------------------------------------------------------------------------------ kills, then reruns
FAST_PLAN = ("import sys; sys.path.insert(0, {tests!r}); import pytest; from test_trained_work_safety import "
             "_patch_fast_registration; from lesionnet.cli.plan_and_preprocess import main; "
             "mp = pytest.MonkeyPatch(); _patch_fast_registration(mp); sys.exit(main(sys.argv[1:]))")


def _kill_at(command: list, env: dict, seconds: float, cwd=None) -> None:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()


def _timed(command: list, env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    return time.perf_counter() - start


def _temporary_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob(".*"))


def _without_timings(value):
    """``value`` without what differs between two identical runs: wall times, file modification times and
    the decision texts that quote them."""
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items()
                if not any(word in k for word in ("second", "mtime", "time")) and k != "rule"}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def _preprocessed_contents(folder: Path) -> dict:
    """Every file under ``folder``: arrays byte for byte, JSON files without their timings."""
    return {name: _without_timings(json.loads(data)) if name.endswith(".json") else data
            for name, (data, _) in _snapshot(folder).items()}


def _records(path: Path) -> list:
    return [{k: v for k, v in r.items() if k != "processing time"}
            for r in json.loads(path.read_text())["results"]]


def _same_records(got: list, expected: list) -> bool:
    """The same predictions: equal keys, and equal values bit for bit (with ITK on one thread; on several
    threads the prediction-time registration sums in varying order, about 1e-6 voxel apart)."""
    if [sorted(r) for r in got] != [sorted(r) for r in expected]:
        return False
    for a, b in zip(got, expected):
        for key in b:
            try:
                numbers = np.asarray(a[key], dtype=float), np.asarray(b[key], dtype=float)
            except (TypeError, ValueError):
                numbers = None                                     # text, None, lists of scan ids
            if numbers is not None and numbers[0].shape == numbers[1].shape:
                if not np.array_equal(*numbers, equal_nan=True):
                    return False
            elif a[key] != b[key]:
                return False
    return True


@pytest.mark.slow
def test_killed_commands_rerun_to_the_uninterrupted_results(trained, tmp_path):
    """SIGKILL at three seeded random moments of lesionnet_train, lesionnet_plan_and_preprocess and
    lesionnet_predict; the documented rerun (``--c``, plain, ``--continue``) gives the uninterrupted result
    and leaves no temporary file."""
    moments = random.Random(2024)
    # training: --c after the kill ends with the uninterrupted weights
    train = [sys.executable, "-m", "lesionnet.cli.train", "501", "tlt", "0", "--preset", "tiny", "--epochs", "3",
             "--iterations", "3", "--seed", "1", "--threads", "1", "--max_val_pairs", "2", "--no_progress"]
    seconds = _timed(train, _env(trained, lesionnet_results=tmp_path / "train_ref"))
    reference = load_checkpoint(tmp_path / "train_ref" / FOLD / FINAL)["model"]
    for trial in range(3):
        env = _env(trained, lesionnet_results=tmp_path / f"train_{trial}")
        _kill_at(train, env, moments.uniform(0.2, 0.95) * seconds)
        _timed(train + ["--c"], env)
        resumed = load_checkpoint(tmp_path / f"train_{trial}" / FOLD / FINAL)["model"]
        assert all(torch.equal(reference[k], resumed[k]) for k in reference), f"trial {trial}"
        assert _temporary_files(tmp_path / f"train_{trial}") == []
    # planning and preprocessing: a plain rerun completes the same files
    plan = [sys.executable, "-c", FAST_PLAN.format(tests=str(TESTS)), "-d", "501", "-np", "1", "--gpu_memory_gb", "2",
            "--no_progress"]
    seconds = _timed(plan, _env(trained, lesionnet_preprocessed=tmp_path / "plan_ref"))
    expected = _preprocessed_contents(tmp_path / "plan_ref")
    for trial in range(3):
        env = _env(trained, lesionnet_preprocessed=tmp_path / f"plan_{trial}")
        _kill_at(plan, env, moments.uniform(0.2, 0.95) * seconds)
        _timed(plan, env)
        got = _preprocessed_contents(tmp_path / f"plan_{trial}")
        assert sorted(got) == sorted(expected), f"trial {trial}"
        different = [k for k in expected if got[k] != expected[k]]
        assert different == [], f"trial {trial}: {different}"
        assert _temporary_files(tmp_path / f"plan_{trial}") == []
    # prediction: --continue completes the same predictions
    images = trained["raw"] / DATASET / "imagesTs"
    predict = [sys.executable, "-m", "lesionnet.cli.predict", "-i", str(images), "-m", "tlt", "--no_progress"]
    one_thread = _env(trained, ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1)      # a deterministic registration
    seconds = _timed(predict + ["-o", str(tmp_path / "pred_ref")], one_thread)
    expected = _records(tmp_path / "pred_ref" / "predictions.json")
    for trial in range(3):
        out = tmp_path / f"pred_{trial}"
        _kill_at(predict + ["-o", str(out)], one_thread, moments.uniform(0.2, 0.95) * seconds)
        _timed(predict + ["-o", str(out), "--continue"], one_thread)
        assert _same_records(_records(out / "predictions.json"), expected), f"trial {trial}"
        assert _temporary_files(out) == []
