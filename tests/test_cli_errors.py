"""Every ``lesionnet_*`` command: readable ``-h``, one clear error line (exit 1) instead of a traceback unless
``-v``, and Ctrl-C ending with exit 130 and the command that continues the work. The commands run as a
user runs them, in a subprocess."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from phantoms import FAST_DEFORMABLE, FAST_REGISTRATION

from lesionnet.cli import plan_and_preprocess
from lesionnet.cli.entry import EXIT_INTERRUPTED, command_line, error_message, run_command
from lesionnet.datasets.synthetic import TrackingConfig, generate_tracking_dataset
from lesionnet.planning import fingerprint as fp_module
from lesionnet.preprocessing import preprocess as pre_module

DATASET = "Dataset501_SynthLesionTracking"
ROOT = Path(__file__).resolve().parents[1]
COMMANDS = sorted(re.findall(r'"(lesionnet_\w+) = lesionnet\.cli\.(\w+):main"', (ROOT / "setup.py").read_text()))


@pytest.fixture(scope="module")
def data_501(tmp_path_factory) -> dict:
    """A tiny Dataset501 (4 patients), planned and preprocessed once for this module."""
    root = tmp_path_factory.mktemp("cli501")
    dirs = {"lesionnet_raw": root / "raw", "lesionnet_preprocessed": root / "preprocessed"}
    with pytest.MonkeyPatch.context() as mp:
        for name, folder in dirs.items():
            mp.setenv(name, str(folder))
        for module, attribute in ((fp_module, "PRIOR_ERROR_REGISTRATION"), (fp_module, "DEFAULT_PRIOR_REGISTRATION"),
                                  (pre_module, "DEFAULT_PRIOR_REGISTRATION")):
            mp.setattr(module, attribute, FAST_REGISTRATION)
        mp.setattr(fp_module, "DEFORMABLE_PRIOR", FAST_DEFORMABLE)
        config = TrackingConfig(num_patients=4, nominal_shape_zyx=(16, 40, 40))
        generate_tracking_dataset(dirs["lesionnet_raw"] / DATASET, config, seed=0, progress=False)
        assert plan_and_preprocess.main(["-d", "501", "-np", "1", "--gpu_memory_gb", "2", "--no_progress"]) == 0
    return dirs


def _env(data: dict | None, tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("lesionnet_")}
    env.update({k: str(v) for k, v in (data or {}).items()})
    env["lesionnet_results"] = str(tmp_path / "results")
    env.update(extra)
    return env


def _run(module: str, args: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"lesionnet.cli.{module}", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _error_line(result: subprocess.CompletedProcess, prog: str) -> str:
    """The command failed with exit 1 and one error message of its own, without a traceback."""
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"{prog}: error: ")]
    assert len(errors) == 1, result.stderr[-2000:]
    return errors[0]


# ------------------------------------------------------------------------------------------ -h
@pytest.mark.parametrize("prog,module", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_command_has_a_working_help(prog, module, tmp_path):
    result = _run(module, ["-h"], _env(None, tmp_path), timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stdout.startswith(f"usage: {prog}") and "-v" in result.stdout


def test_the_command_list_is_complete():
    assert len(COMMANDS) >= 8 and ("lesionnet_train", "train") in COMMANDS


# ------------------------------------------------------------------------------------------ errors
def test_train_on_an_unknown_dataset_names_it_and_the_available_ones(data_501, tmp_path):
    line = _error_line(_run("train", ["599", "tlt", "0"], _env(data_501, tmp_path)), "lesionnet_train")
    assert "No dataset with id 599" in line and DATASET in line


def test_train_with_a_duplicated_id_names_both_folders(data_501, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(data_501["lesionnet_raw"], raw)
    (raw / "Dataset501_Copy").mkdir()
    env = _env(dict(data_501, lesionnet_raw=raw), tmp_path)
    line = _error_line(_run("train", ["501", "tlt", "0"], env), "lesionnet_train")
    assert "Several datasets have id 501" in line and "Dataset501_Copy" in line and DATASET in line


@pytest.mark.parametrize("module,args", [("train", ["501", "tlt", "0"]), ("plan_and_preprocess", ["-d", "501"]),
                                         ("verify_dataset", ["-d", "501"])])
def test_unset_data_folders_are_one_error_naming_the_variable(module, args, tmp_path):
    env = _env(None, tmp_path, HOME=str(tmp_path))          # the default folder ~/lesionnet_data does not exist
    env.pop("lesionnet_results")
    line = _error_line(_run(module, args, env), f"lesionnet_{module}")
    assert "lesionnet_raw" in line and str(tmp_path) in line


def test_verbose_shows_the_traceback(data_501, tmp_path):
    result = _run("train", ["599", "tlt", "0", "-v"], _env(data_501, tmp_path))
    assert result.returncode == 1 and "Traceback" in result.stderr and "DatasetNotFoundError" in result.stderr
    assert "lesionnet_train: error: No dataset with id 599" in result.stderr


def test_wrong_checkpoint_name_is_an_argparse_error(tmp_path):
    result = _run("predict", ["-i", str(tmp_path), "-o", str(tmp_path / "out"), "--checkpoint", "nope"],
                  _env(None, tmp_path))
    assert result.returncode == 2 and "invalid choice: 'nope'" in result.stderr and "Traceback" not in result.stderr


def test_error_messages():
    assert error_message(KeyError("fold 9: no such fold")) == "fold 9: no such fold"
    assert error_message(FileNotFoundError(2, "No such file or directory", "/x/a.json")) == \
        "[Errno 2] No such file or directory: '/x/a.json'"
    assert error_message(OSError("disk full")) == "disk full"
    unexpected = error_message(ZeroDivisionError("division by zero"))
    assert unexpected.startswith("unexpected ZeroDivisionError: division by zero") and "-v" in unexpected
    assert error_message(ValueError("a.json: radius must be positive.")) == "a.json: radius must be positive."


def test_the_continuing_command_line():
    assert command_line("lesionnet_train", ["501", "tlt", "0", "--overwrite"], add=["--c"], drop=["--overwrite"]) == \
        "lesionnet_train 501 tlt 0 --c"
    assert command_line("lesionnet_predict", ["-i", "a b", "--continue"], add=["--continue"]) == \
        "lesionnet_predict -i 'a b' --continue"


def test_run_command_statuses(capsys):
    def interrupted():
        raise KeyboardInterrupt

    def failing():
        raise ValueError("cases.json: broken. Delete it.")

    assert run_command("lesionnet_x", lambda: None) == 0
    assert run_command("lesionnet_x", lambda: 3) == 3
    assert run_command("lesionnet_x", interrupted, interrupted_hint="lesionnet_x --c") == EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip() == "lesionnet_x: interrupted. To continue: lesionnet_x --c"
    assert run_command("lesionnet_x", failing) == 1
    assert capsys.readouterr().err.strip() == "lesionnet_x: error: cases.json: broken. Delete it."
    assert run_command("lesionnet_x", failing, verbose=True) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("verbose", [False, True])
def test_ctrl_c_hides_the_exit_handler_failures_of_interrupted_libraries(verbose):
    """A library stopped half-way by Ctrl-C can raise in its atexit handler (blosc2 did, in CI): no
    traceback then, unless ``-v``."""
    script = ("import atexit, sys\n"
              "from lesionnet.cli.entry import run_command\n"
              "def destroy():\n"
              "    raise NameError('half-imported')\n"
              "def body():\n"
              "    atexit.register(destroy)\n"
              "    raise KeyboardInterrupt\n"
              f"sys.exit(run_command('lesionnet_x', body, verbose={verbose}, interrupted_hint='lesionnet_x --c'))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == EXIT_INTERRUPTED
    assert "lesionnet_x: interrupted. To continue: lesionnet_x --c" in result.stderr
    assert ("Traceback" in result.stderr) == verbose, result.stderr


# ------------------------------------------------------------------------------------------ Ctrl-C
#: what a shell shows as Ctrl-C ($? = 130): exit status 130, or death by SIGINT. After lesionnet's message and
#: exit(130), CPython sometimes ends the process with SIGINT itself (seen with strace: it restores SIG_DFL and
#: kills itself), depending on where the signal landed; which of the two happens is a matter of timing.
INTERRUPTED = (130, -signal.SIGINT)


def _interruptible() -> None:
    """In the child before exec: SIGINT as in a terminal (a test run in the background of a script inherits
    SIGINT ignored, and Python then leaves it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_when(command: list[str], env: dict, ready, timeout: float = 240) -> subprocess.CompletedProcess:
    """Start ``command``, send SIGINT once ``ready()`` is true, and return the finished process."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=_interruptible)
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None and not ready():
        time.sleep(0.05)
    assert process.poll() is None, "the command ended before it could be interrupted: " + process.stderr.read()[-2000:]
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def test_ctrl_c_in_train_tells_how_to_continue(data_501, tmp_path):
    env = _env(data_501, tmp_path)
    fold = tmp_path / "results" / DATASET / "tlt__lesionnet_plans" / "fold_0"
    command = [sys.executable, "-m", "lesionnet.cli.train", "501", "tlt", "0", "--preset", "tiny", "--epochs", "50",
               "--iterations", "20", "--max_val_pairs", "2", "--no_progress"]
    result = _interrupt_when(command, env, lambda: (fold / "checkpoint_untrained.pth").exists())
    assert result.returncode in INTERRUPTED and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "lesionnet_train: interrupted. To continue: lesionnet_train 501 tlt 0 --preset tiny" in result.stderr
    assert result.stderr.rstrip().endswith("--no_progress --c")


def test_ctrl_c_while_the_console_script_starts_prints_no_import_traceback(tmp_path):
    script = Path(sys.executable).parent / "lesionnet_train"
    if not script.exists():
        script = Path(shutil.which("lesionnet_train") or script)
    if not script.exists():
        pytest.skip("the lesionnet_train console script is not installed (pip install -e .)")
    process = subprocess.Popen([str(script), "501", "tlt", "0"], env=_env(None, tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=_interruptible)
    time.sleep(0.3)                                         # still importing torch and lesionnet
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode in INTERRUPTED and "Traceback" not in err, err[-2000:]
    assert "lesionnet_train: interrupted" in err


def test_ctrl_c_in_predict_tells_how_to_continue(data_501, tmp_path):
    env = _env(data_501, tmp_path)
    out = tmp_path / "out"
    images = Path(data_501["lesionnet_raw"]) / DATASET / "imagesTr"
    command = [sys.executable, "-m", "lesionnet.cli.predict", "-i", str(images), "-o", str(out), "-m", "deformable",
               "--no_progress"]
    result = _interrupt_when(command, env, lambda: (out / "cases").is_dir() and any((out / "cases").iterdir()))
    assert result.returncode in INTERRUPTED and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "lesionnet_predict: interrupted. To continue: lesionnet_predict -i" in result.stderr
    assert result.stderr.rstrip().endswith("--continue")


@pytest.mark.slow
def test_ctrl_c_in_preprocessing_with_workers_prints_no_worker_traceback(data_501, tmp_path):
    """Ctrl-C while the pool preprocesses: one message from the main process, no worker tracebacks; the
    rerun that the message names finishes the work."""
    pre = tmp_path / "pre"
    env = _env(dict(data_501, lesionnet_preprocessed=pre), tmp_path)
    command = [sys.executable, "-m", "lesionnet.cli.plan_and_preprocess", "-d", "501", "-np", "2", "--no_progress"]
    result = _interrupt_when(command, env, lambda: any(pre.glob(f"{DATASET}/*/*.b2nd")))
    assert result.returncode in INTERRUPTED and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "KeyboardInterrupt" not in result.stderr
    assert "lesionnet_plan_and_preprocess: interrupted. To continue: lesionnet_plan_and_preprocess -d 501" \
        in result.stderr
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
