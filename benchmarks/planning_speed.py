"""Benchmark: fingerprint + planning speed on ~100 synthetic Dataset501 scans (and preprocessing, re-run).

Generates Dataset501 (default generator settings, 2-4 time points per patient) with enough patients
for ``--num_scans`` training scans, then times, in this process with ``-np`` workers:

1. ``extract_fingerprint`` — reading every scan (body-mask intensity samples, spacing, shape) and the
   affine-prior error from a seeded sample of at most 12 scan pairs registered at 6 mm (single ITK
   thread per worker); then once more with ``force=True``: the scan pass alone, registrations cached;
2. ``plan_experiment`` — the rules and the memory models (fixed ``--gpu_memory_gb``);
3. ``preprocess_dataset`` — resampling, normalisation, blosc2 storage, and the 2 mm registration of every
   scan pair for the training priors (reported apart: this is preprocessing, not planning);
4. a second complete run (must be a no-op).

The headline figure is (1 + 2) seconds per GB of raw training images (compressed NIfTI on disk).
Results go to ``benchmarks/results/planning_speed.{json,md}`` (written atomically).

Usage::

    python benchmarks/planning_speed.py                         # 100 scans, -np 2 (the documented figures)
    python benchmarks/planning_speed.py --num_scans 10 --np 2   # quick check
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lesionnet.datasets.synthetic import TrackingConfig, generate_tracking_dataset, make_patient  # noqa: E402
from lesionnet.datasets.synthetic.common import num_test_cases, patient_seed_sequence  # noqa: E402
from lesionnet.utils.files import load_json, write_json, write_text  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def patients_for(num_scans: int, seed: int, test_fraction: float) -> tuple[int, int]:
    """Fewest patients whose training split holds >= ``num_scans`` scans; (patients, training scans)."""
    counts = []
    n = 1
    while True:
        config = TrackingConfig(num_patients=n, test_fraction=test_fraction)
        while len(counts) < n:
            i = len(counts)
            counts.append(make_patient(config, patient_seed_sequence(seed, i), f"P{i:04d}").num_timepoints)
        num_train = n - num_test_cases(n, test_fraction)
        if sum(counts[:num_train]) >= num_scans:
            return n, sum(counts[:num_train])
        n += 1


def _or_skipped(value) -> str:
    return "not run (--skip_preprocessing)" if value is None else str(value)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_scans", type=int, default=100)
    parser.add_argument("--np", dest="num_processes", type=int, default=2)
    parser.add_argument("--gpu_memory_gb", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip_preprocessing", action="store_true",
                        help="time fingerprint + planning only (preprocessing registers every scan pair: slow)")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one, removed)")
    args = parser.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="lesionnet_planning_speed_"))
    os.environ["lesionnet_raw"] = str(work / "raw")
    os.environ["lesionnet_preprocessed"] = str(work / "preprocessed")
    from lesionnet.cli.plan_and_preprocess import run
    from lesionnet.methods import REGISTRY
    from lesionnet.planning.fingerprint import extract_fingerprint
    from lesionnet.planning.plans_io import plan_experiment
    from lesionnet.preprocessing.preprocess import preprocess_dataset

    test_fraction = 0.01
    num_patients, num_scans = patients_for(args.num_scans, args.seed, test_fraction)
    raw_folder = work / "raw" / "Dataset501_SynthLesionTracking"
    t0 = time.perf_counter()
    if not raw_folder.is_dir():
        generate_tracking_dataset(raw_folder, TrackingConfig(num_patients=num_patients, test_fraction=test_fraction),
                                  seed=args.seed, num_processes=args.num_processes, progress=False)
    t_generate = time.perf_counter() - t0

    t0 = time.perf_counter()
    fingerprint = extract_fingerprint(raw_folder, num_processes=args.num_processes, progress=False)
    t_fingerprint = time.perf_counter() - t0
    t0 = time.perf_counter()    # the scan pass alone: forced recomputation, registrations now cached
    extract_fingerprint(raw_folder, num_processes=args.num_processes, progress=False, force=True)
    t_scan_pass = time.perf_counter() - t0
    t0 = time.perf_counter()
    plans = plan_experiment(raw_folder, REGISTRY.values(), gpu_memory_gb=args.gpu_memory_gb, fingerprint=fingerprint)
    t_plan = time.perf_counter() - t0
    t_preprocess = t_rerun = None
    rerun = {"preprocessing": {}}
    if not args.skip_preprocessing:
        t0 = time.perf_counter()
        preprocess_dataset(raw_folder, plans=plans, num_processes=args.num_processes, progress=False)
        t_preprocess = time.perf_counter() - t0
        t0 = time.perf_counter()
        rerun = run(raw_folder.name, gpu_memory_gb=args.gpu_memory_gb, num_processes=args.num_processes,
                    progress=False)
        t_rerun = time.perf_counter() - t0

    pre = work / "preprocessed" / raw_folder.name
    records = [load_json(p) for p in sorted((pre / "registrations" / "planning").glob("*.json"))]
    registration_seconds = sum(r["registration"]["seconds"] for r in records)
    prior_records = [load_json(p) for p in sorted((pre / "registrations").glob("*.json"))]
    prior_seconds = sum(r["registration"]["seconds"] for r in prior_records)
    raw_gb = fingerprint["raw_size_bytes"] / 1e9
    data_folder = pre / "lesionnetPlans_3d"
    pre_bytes = sum(p.stat().st_size for p in data_folder.iterdir()) if data_folder.is_dir() else 0
    tlt = plans["configurations"]["tlt"]
    result = {
        "num_training_scans": fingerprint["num_scans"],
        "num_patients": num_patients,
        "num_training_pairs": fingerprint["tracking"]["num_pairs"],
        "num_registrations": len(records),
        "num_scan_pairs": fingerprint["tracking"]["num_scan_pairs_to_register"],
        "num_prior_registrations": len(prior_records),
        "prior_registration_s_mean": round(prior_seconds / max(1, len(prior_records)), 2),
        "raw_training_images_gb": round(raw_gb, 4),
        "num_processes": args.num_processes,
        "cpu_count": os.cpu_count(),
        "generate_s": round(t_generate, 1),
        "fingerprint_s": round(t_fingerprint, 1),
        "scan_pass_s": round(t_scan_pass, 1),
        "scan_pass_s_per_gb": round(t_scan_pass / raw_gb, 1),
        "plan_s": round(t_plan, 2),
        "fingerprint_plus_plan_s": round(t_fingerprint + t_plan, 1),
        "seconds_per_gb": round((t_fingerprint + t_plan) / raw_gb, 1),
        "seconds_per_scan": round((t_fingerprint + t_plan) / fingerprint["num_scans"], 2),
        "registration_cpu_s_sum": round(registration_seconds, 1),
        "registration_s_mean": round(registration_seconds / max(1, len(records)), 2),
        "preprocess_s": None if t_preprocess is None else round(t_preprocess, 1),
        "preprocessed_gb": round(pre_bytes / 1e9, 4),
        "rerun_s": None if t_rerun is None else round(t_rerun, 2),
        "rerun_preprocessed": {k: len(v["processed"]) for k, v in rerun["preprocessing"].items()},
        "plan_tlt": {k: tlt[k] for k in ("target_spacing_zyx", "template_patch_size_zyx", "search_patch_size_zyx",
                                         "sss_threshold", "attention_depth", "attention_heads", "attention_width",
                                         "batch_size")},
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "planning_speed.json", result)
    lines = [
        "# Planning speed (fingerprint + plans) on synthetic Dataset501",
        "",
        f"{result['num_training_scans']} training scans ({num_patients} patients, "
        f"{result['num_training_pairs']} pairs, "
        f"{result['num_scan_pairs']} scan pairs), {result['raw_training_images_gb']} GB of raw training images "
        f"(.nii.gz), {args.num_processes} worker processes on a {result['cpu_count']}-core machine "
        "shared with other work.",
        "",
        "| step | seconds |",
        "| --- | --- |",
        f"| fingerprint (scan pass + {result['num_registrations']} sampled 6 mm registrations) "
        f"| {result['fingerprint_s']} |",
        f"| of which the scan pass alone (re-run with registrations cached) | {result['scan_pass_s']} |",
        f"| planning (rules + memory models) | {result['plan_s']} |",
        f"| **fingerprint + planning** | **{result['fingerprint_plus_plan_s']}** |",
        f"| preprocessing (resample, normalise, blosc2, {result['num_prior_registrations']} 2 mm registrations "
        f"for the pair priors) | {_or_skipped(result['preprocess_s'])} |",
        f"| second full run (no-op) | {_or_skipped(result['rerun_s'])} |",
        "",
        f"**{result['seconds_per_gb']} s per GB** of raw images ({result['seconds_per_scan']} s per scan). "
        f"Prior-error registrations: {result['num_registrations']} × {result['registration_s_mean']} s "
        f"(single-threaded each) = {result['registration_cpu_s_sum']} s of worker time; the scan pass alone runs at "
        f"{result['scan_pass_s_per_gb']} s per GB. Preprocessing's registrations: "
        f"{result['num_prior_registrations']} × {result['prior_registration_s_mean']} s.",
        "",
        f"Preprocessed data: {result['preprocessed_gb']} GB (float32, blosc2).",
        "",
        "Reproduce: `python benchmarks/planning_speed.py`",
    ]
    write_text(RESULTS / "planning_speed.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
