"""Data-parallel training on torch.distributed (gloo on the CPU): sharded batches, identical replicas, the same
loss curve as one process, sharded validation, a killed rank, and --c with another number of processes."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from lesionnet.methods import REGISTRY
from lesionnet.training.batch_stream import SeededBatchLoader, batch_shard, whole_batch_draws
from lesionnet.training.checkpoints import FINAL, LATEST, load_checkpoint
from lesionnet.training.distributed import SINGLE_PROCESS, check_batch_split, weights_digest
from lesionnet.training.run_training import train_model, training_output_folder
from lesionnet.utils.parallel import WorkerDiedError, run_jobs

TLT = REGISTRY["tlt"]
DATASET = "Dataset501_SynthLesionTracking"
#: 4 steps of a global batch of 4, one step per epoch: the history is the per-step loss curve
CURVE = dict(num_epochs=4, iterations_per_epoch=1, batch_size=4, learning_rate=1e-3, seed=3, max_val_pairs=4)


def _toy_maker(items, draws):
    """A batch whose values record what was drawn for each position (the item and the sample's own draw)."""
    return {"item": np.array([[item, rng.integers(1 << 30)] for item, rng in draws.samples(items)])}


def test_ranks_build_disjoint_shares_of_the_single_process_batch():
    items = list(range(50))
    whole = SeededBatchLoader(items, _toy_maker, 6, seed=2).build_batch(7)["item"]
    shares = []
    for rank in range(3):
        with batch_shard(rank, 3):
            shares.append(SeededBatchLoader(items, _toy_maker, 6, seed=2).build_batch(7)["item"])
    # together the ranks build exactly the single-process batch, each position once, in order
    np.testing.assert_array_equal(np.concatenate(shares), whole)
    assert [len(s) for s in shares] == [2, 2, 2]
    assert whole_batch_draws(6, 2, 7).share(list("abcdef")) == list("abcdef")
    with pytest.raises(ValueError, match="multiple of 4"):
        check_batch_split(6, 4)
    with batch_shard(0, 4), pytest.raises(ValueError, match="cannot be split evenly"):
        SeededBatchLoader(items, _toy_maker, 6, seed=2)


def test_weight_digest_sees_one_changed_value():
    torch.manual_seed(0)
    network = torch.nn.Linear(3, 2)
    before = weights_digest(network)
    assert weights_digest(network) == before
    with torch.no_grad():
        network.weight[0, 0] = torch.nextafter(network.weight[0, 0], torch.tensor(2.0))
    assert weights_digest(network) != before
    SINGLE_PROCESS.check_replicas(network, 0)          # one process: nothing to compare
    assert SINGLE_PROCESS.gather(5) == [5] and SINGLE_PROCESS.mean({"a": 2.0}) == {"a": 2.0}
    assert SINGLE_PROCESS.shard([1, 2, 3]) == [1, 2, 3]


def test_two_gloo_processes_train_like_one_with_the_same_global_batch(env_501, tmp_path):
    """A 2-process gloo run of the tiny TLT: every step checks that both ranks hold bit-identical weights
    (check_replicas), and the loss curve, the sharded validation and the final weights match a 1-process
    run with the same global batch of 4 (2 per rank) up to float rounding."""
    one = train_model(501, TLT, 0, preset="tiny", progress=False, output_folder=tmp_path / "one", **CURVE)
    two = train_model(501, TLT, 0, preset="tiny", progress=False, output_folder=tmp_path / "two",
                      num_processes=2, check_replicas=True, threads_per_process=1, **CURVE)
    assert two.output_folder == tmp_path / "two" and one.epochs_run == two.epochs_run == 4
    a, b = load_checkpoint(tmp_path / "one" / FINAL), load_checkpoint(tmp_path / "two" / FINAL)
    curve_a, curve_b = [h["train_loss"] for h in a["history"]], [h["train_loss"] for h in b["history"]]
    # step 0 (the same weights) agrees to float rounding; Adam's first steps (about lr · sign(gradient))
    # turn rounding-level gradient differences of near-zero components into weight differences, which
    # move the next losses by about 1e-4 relative; a wrong split or normalisation of the batch moves them
    # by percents (another batch changes the loss by more than 3 %)
    assert abs(curve_b[0] - curve_a[0]) <= 1e-6 * abs(curve_a[0])
    np.testing.assert_allclose(curve_b, curve_a, rtol=1e-3)
    assert len(set(np.round(curve_a, 3))) > 1, "the curve moves: these are four different batches"
    for key in ("val_med_mm", "val_cpm_10mm", "val_n"):
        np.testing.assert_allclose([h[key] for h in b["history"]], [h[key] for h in a["history"]], rtol=1e-3,
                                   atol=1e-3)
    # 99 % of the weights agree to 1e-6 while training moved the median weight by about 2e-3; the rest are
    # weights whose gradient is zero up to rounding (e.g. the attention's key biases), which Adam moves by
    # about lr · sign(rounding noise)
    init = load_checkpoint(tmp_path / "one" / "checkpoint_untrained.pth")["model"]
    differences = torch.cat([(b["model"][k] - v).abs().flatten() for k, v in a["model"].items()])
    moved = torch.cat([(v - init[k]).abs().flatten() for k, v in a["model"].items()])
    assert torch.quantile(differences, 0.99) < 1e-6 and torch.median(moved) > 1e-4
    steps = {float(s["step"]) for s in b["optimizer"]["state"].values()}
    assert steps == {4.0}
    log = (tmp_path / "two" / "training_log.txt").read_text()
    assert "x 2 processes" in log and log.count("epoch 3:") == 1, "rank 0 alone writes the log"


def test_killed_rank_ends_the_run_with_a_message_and_c_continues(env_501, tmp_path):
    """SIGKILL of rank 1 mid-run: the launcher stops rank 0 and exits within a minute naming rank 1 and
    --c; --c then finishes the run in one process (another number of processes)."""
    epochs = 6
    base = [sys.executable, "-m", "lesionnet.cli.train", "501", "tlt", "0", "--preset", "tiny", "--epochs",
            str(epochs), "--iterations", "4", "--batch_size", "2", "--seed", "1", "--threads", "1",
            "--max_val_pairs", "2", "--no_progress"]
    folder = training_output_folder(DATASET, "tlt", 0)
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(base + ["--num_processes", "2"], stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.time() + 240
        pids = None
        while time.time() < deadline and process.poll() is None:
            found = re.search(r"pids (\d+), (\d+)", stderr_path.read_text())
            pids = pids or (found and [int(found.group(1)), int(found.group(2))])
            latest = folder / LATEST
            if pids and latest.exists() and load_checkpoint(latest)["epoch"] >= 1:
                break
            time.sleep(0.05)
        assert process.poll() is None and pids, "the run ended before rank 1 could be killed; make it longer"
        os.kill(pids[1], signal.SIGKILL)
        killed_at = time.time()
        try:
            returncode = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("the run hung after one of its processes was killed")
    message = stderr_path.read_text()
    assert returncode == 1 and time.time() - killed_at < 60
    assert f"rank 1 (pid {pids[1]}) was killed by signal SIGKILL" in message, message
    assert "--c" in message and "Traceback" not in message
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)                       # rank 0 was stopped too
    start = load_checkpoint(folder / LATEST)["epoch"]
    assert 1 <= start < epochs and not (folder / FINAL).exists()
    continued = subprocess.run(base + ["--c"], check=True, capture_output=True, text=True, timeout=300)
    assert f"epoch {start} of {epochs}" in continued.stderr
    final = load_checkpoint(folder / FINAL)
    assert [h["epoch"] for h in final["history"]] == list(range(epochs))
    assert {float(s["step"]) for s in final["optimizer"]["state"].values()} == {epochs * 4.0}


def test_num_processes_must_split_the_batch(env_501, tmp_path):
    with pytest.raises(ValueError, match="multiple of 2"):
        train_model(501, TLT, 0, preset="tiny", progress=False, output_folder=tmp_path / "odd", num_processes=2,
                    **{**CURVE, "batch_size": 3})
    assert not (tmp_path / "odd").exists(), "nothing is written before the inputs are checked"


def _square_or_die(job):
    name, value = job
    if name == "scan_7":
        os.kill(os.getpid(), signal.SIGKILL)          # as the kernel's out-of-memory killer would
    time.sleep(0.05)
    return value * value


def test_a_pool_worker_that_dies_is_named_with_its_case_never_a_hang():
    jobs = [(f"scan_{i}", i) for i in range(12)]
    assert run_jobs(_square_or_die, jobs[:6], 2, False, "square") == [i * i for i in range(6)]
    start = time.time()
    with pytest.raises(WorkerDiedError, match="square: a worker process died .* scan_7") as error:
        run_jobs(_square_or_die, jobs, 2, False, "square")
    assert time.time() - start < 30 and "-np" in str(error.value)


def test_bf16_and_compile_are_off_on_the_cpu_with_a_warning(env_501, tmp_path, caplog):
    """--bf16 and --compile are GPU options: on the CPU the run says so and trains exactly as without them;
    the checkpoint keeps what was asked (a GPU continuing it with --c uses them)."""
    settings = {**CURVE, "num_epochs": 2}
    plain = train_model(501, TLT, 0, preset="tiny", progress=False, output_folder=tmp_path / "plain", **settings)
    asked = train_model(501, TLT, 0, preset="tiny", progress=False, output_folder=tmp_path / "asked",
                        precision="bf16", compile=True, **settings)
    assert "precision bf16: not supported on cpu" in caplog.text
    assert "compile: torch.compile is used on CUDA only" in caplog.text
    a, b = load_checkpoint(plain.output_folder / FINAL), load_checkpoint(asked.output_folder / FINAL)
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert b["training_config"]["precision"] == "bf16" and b["training_config"]["compile"] is True
    with pytest.raises(ValueError, match="precision must be one of"):
        train_model(501, TLT, 0, preset="tiny", progress=False, output_folder=tmp_path / "bad", precision="fp8",
                    **settings)


def test_prediction_in_a_process_pool_gives_the_same_cases(env_501, tmp_path):
    """lesionnet_predict -np 2: the cases are tracked in two spawned workers (each builds the tracker once) and
    written by the main process; the predictions are those of one process, in the same order."""
    from pathlib import Path

    from lesionnet.cli import predict as predict_cli
    from lesionnet.datasets.prediction_format import read_predictions

    train_model(501, TLT, 0, preset="tiny", progress=False, **{**CURVE, "num_epochs": 1})
    images = Path(os.environ["lesionnet_raw"]) / DATASET / "imagesTs"
    runs = {}
    for processes in (1, 2):
        out = tmp_path / f"np{processes}"
        assert predict_cli.main(["-i", str(images), "-o", str(out), "-m", "tlt", "-np", str(processes),
                                 "--no_progress"]) == 0
        runs[processes] = read_predictions(out / "predictions.json")["results"]
        assert len(list((out / "cases").glob("*.json"))) == len({(r["source"], r["target"]) for r in runs[1]})
    assert [r["pair_id"] for r in runs[2]] == [r["pair_id"] for r in runs[1]]
    np.testing.assert_allclose([r["predict target center"] for r in runs[2]],
                               [r["predict target center"] for r in runs[1]], atol=1e-3)
