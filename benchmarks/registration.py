"""Registration benchmark: the priors that trackers start from, side by side on the test splits, in one run.

    python benchmarks/registration.py [--datasets 501 503] [--priors identity affine plain deformable]
                                      [--max_scan_pairs N] [--seed 0]

For every directed scan pair of each dataset's ``pairsTs.json`` it registers the source (template) scan
to the target (search) scan with each prior, maps every lesion of that scan pair through it and scores the
mapped centers with the DLS conventions (CPM@10mm, CPM@Radius, MED). Priors:

* ``identity`` — the source center's world position read in the target scan;
* ``affine`` — lesionnet's affine recipe (``lesionnet.registration.affine``, its default settings);
* ``plain`` — the plain SimpleITK recipe of ``benchmarks/plain_affine.py``, the yardstick;
* ``deformable`` — lesionnet's deformable prior (affine, then a coarse B-spline).

Datasets missing from ``$lesionnet_raw`` are generated with their default configuration. Times are
seconds of registration per scan pair (images already in memory), with ITK's default number of threads,
on the machine named in the output. Writes ``benchmarks/results/registration.json`` and the
"Registration priors" section of ``documentation/benchmarks.md``.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plain_affine import register_plain  # noqa: E402
from report import machine_description, replace_section  # noqa: E402

from lesionnet.datasets.dataset_id import find_dataset_folder  # noqa: E402
from lesionnet.datasets.image_io import geometry_of, read_sitk  # noqa: E402
from lesionnet.datasets.raw_format import load_pairs  # noqa: E402
from lesionnet.evaluation.tracking_metrics import evaluate_tracking, paired_ttest  # noqa: E402
from lesionnet.registration.affine import AffineRegistration, register_affine  # noqa: E402
from lesionnet.registration.deformable import register_deformable  # noqa: E402
from lesionnet.utils.files import write_json  # noqa: E402
from lesionnet.utils.logging_setup import configure_logging  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PRIORS = {
    "identity": lambda template, search: AffineRegistration.identity(),
    "affine": register_affine,
    "plain": register_plain,
    "deformable": register_deformable,
}


def dataset_folder(dataset_id: int, seed: int) -> Path:
    """The raw folder of a built-in dataset, generated (default configuration) when missing."""
    try:
        return find_dataset_folder(dataset_id)
    except (FileNotFoundError, ValueError, LookupError):
        from lesionnet.datasets import synthetic
        generate = {501: synthetic.generate_tracking_dataset, 503: synthetic.generate_followup_dataset}[dataset_id]
        return Path(generate(None, seed=seed, progress=False)["folder"])


def run_dataset(folder: Path, priors: list, max_scan_pairs: int | None, split: str = "Ts") -> dict:
    """Register every directed scan pair of ``pairs{split}.json`` with every prior; metrics and times per prior."""
    by_scan_pair = defaultdict(list)
    for pair in load_pairs(folder / f"pairs{split}.json"):
        by_scan_pair[(pair.source, pair.target)].append(pair)
    scan_pairs = sorted(by_scan_pair)
    if max_scan_pairs is not None and max_scan_pairs < len(scan_pairs):  # evenly spread over the patients
        scan_pairs = [scan_pairs[int(i)] for i in np.linspace(0, len(scan_pairs) - 1, max_scan_pairs)]
    images = {}
    out = {name: {"pred": [], "seconds": []} for name in priors}
    truth, spacing, radius, ids = [], [], [], []
    for index, (source, target) in enumerate(scan_pairs):
        for scan in (source, target):
            if scan not in images:
                images[scan] = read_sitk(folder / f"images{split}" / f"{scan}_0000.nii.gz")
        template, search = images[source], images[target]
        source_geometry, target_geometry = geometry_of(template), geometry_of(search)
        pairs = by_scan_pair[(source, target)]
        for pair in pairs:
            truth.append(pair.target_center_zyx)
            spacing.append(target_geometry.spacing_zyx)
            radius.append(pair.target_radius_mm)
            ids.append(pair.pair_id)
        line = []
        for name in priors:
            start = time.perf_counter()
            registration = PRIORS[name](template, search)
            seconds = time.perf_counter() - start
            out[name]["seconds"].append(seconds)
            out[name]["pred"] += [registration.map_voxel(p.source_center_zyx, source_geometry, target_geometry)
                                  for p in pairs]
            line.append(f"{name} {seconds:.1f}s")
        print(f"  [{index + 1}/{len(scan_pairs)}] {source} -> {target} ({len(pairs)} lesions): {', '.join(line)}",
              flush=True)
    results = {"n_pairs": len(ids), "n_scan_pairs": len(scan_pairs), "priors": {}}
    evaluations = {}
    for name in priors:
        evaluation = evaluate_tracking(np.asarray(out[name]["pred"]), np.asarray(truth), np.asarray(spacing),
                                       np.asarray(radius), pair_ids=ids)
        evaluations[name] = evaluation
        seconds = np.asarray(out[name]["seconds"])
        results["priors"][name] = {**evaluation.summary(), "seconds_per_scan_pair_median": float(np.median(seconds)),
                                   "seconds_per_scan_pair_mean": float(seconds.mean())}
    results["paired_tests"] = {
        f"{a}_vs_{b}": {"distance_mm": paired_ttest(evaluations[a].distance_mm, evaluations[b].distance_mm).to_dict(),
                        "CPM@10mm": paired_ttest(evaluations[a].hit_10mm, evaluations[b].hit_10mm).to_dict()}
        for a, b in (("affine", "plain"), ("deformable", "affine"), ("affine", "identity"))
        if a in evaluations and b in evaluations}
    return results


def markdown(results: dict) -> str:
    lines = ["| dataset (test split) | prior | n pairs | CPM@10mm | CPM@Radius | MED (mm) | s / scan pair (median) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for dataset, r in results["datasets"].items():
        for name, m in r["priors"].items():
            lines.append(f"| {dataset} | {name} | {m['n']} | {m['CPM@10mm']:.1f} | {m['CPM@Radius']:.1f} | "
                         f"{m['MED']:.2f} | {m['seconds_per_scan_pair_median']:.2f} |")
    lines.append("")
    for dataset, r in results["datasets"].items():
        for key, test in r["paired_tests"].items():
            d, c = test["distance_mm"], test["CPM@10mm"]
            lines.append(f"- {dataset}, {key.replace('_vs_', ' vs ')}: MED {d['mean_difference']:+.2f} mm "
                         f"(p = {d['p_value']:.2g}), CPM@10mm {100 * c['mean_difference']:+.1f} points "
                         f"(p = {c['p_value']:.2g}); paired t-tests over {r['n_pairs']} pairs.")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, nargs="+", default=[501, 503])
    parser.add_argument("--priors", nargs="+", default=list(PRIORS), choices=list(PRIORS))
    parser.add_argument("--max_scan_pairs", type=int, default=None,
                        help="N scan pairs spread over the split only (a quick look)")
    parser.add_argument("--seed", type=int, default=0, help="seed of datasets generated here")
    parser.add_argument("--split", choices=["Ts", "Tr"], default="Ts",
                        help="Ts (default): the benchmark; Tr: the training split, where settings are chosen")
    parser.add_argument("--no_write", action="store_true", help="print only; do not update the results files")
    args = parser.parse_args(argv)
    configure_logging()
    results = {"machine": machine_description(), "datasets": {}}
    for dataset_id in args.datasets:
        folder = dataset_folder(dataset_id, args.seed)
        print(f"{folder.name}:", flush=True)
        results["datasets"][folder.name] = run_dataset(folder, args.priors, args.max_scan_pairs, args.split)
    table = markdown(results)
    print(table)
    if not args.no_write and args.max_scan_pairs is None and args.split == "Ts":
        write_json(ROOT / "benchmarks" / "results" / "registration.json", results)
        replace_section(ROOT / "documentation" / "benchmarks.md", "Registration priors", "\n".join([
            f"Produced by `python benchmarks/registration.py` on {results['machine']}. Every prior maps the "
            "source lesion center of each test pair into the target scan; `s / scan pair` is the registration "
            "time of a scan pair (shared by its lesions). `plain` is the plain SimpleITK recipe of "
            "`benchmarks/plain_affine.py`; documentation/registration.md describes lesionnet's recipes.",
            "", table]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
