"""Learning curve: the planned TLT trained for a fixed time budget, validated as it goes.

    python benchmarks/learning_curve.py [--minutes 60] [--points 12] [--device cpu] [--dataset 501]
    python benchmarks/learning_curve.py --from_run FOLDER      # the curve of a finished run, no training

Trains the method as planned (``--preset plan``) on fold 0 of the preprocessed dataset into
``$lesionnet_results/<dataset>/<method>__lesionnet_plans/learning_curve`` (the fold's trained model is
never touched). The budget is split into ``--points`` epochs: a short timing run sets the iterations per
epoch so that the training steps fill the budget (validation comes on top). After every epoch the fold-0
validation pairs are tracked; the untrained network is the first point, and the registration prior alone on
the same pairs is drawn as a reference. Writes
``benchmarks/results/learning_curve_<dataset>.json`` and ``.png`` (validation CPM@10mm and MED against
training iterations, with the training loss) and the section "Learning curve" of
``documentation/benchmarks.md``. Times are wall times on the machine named in the output.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine_description, replace_section  # noqa: E402

from lesionnet.datasets.dataset_id import resolve_raw_dataset
from lesionnet.methods import get_method
from lesionnet.training.checkpoints import FINAL, load_checkpoint
from lesionnet.training.run_training import resolve_device, set_cpu_threads, train_model, training_output_folder
from lesionnet.utils.files import write_json
from lesionnet.utils.logging_setup import configure_logging

ROOT = Path(__file__).resolve().parents[1]


def seconds_per_step(dataset, method, device, batch_size: int | None, output: Path) -> float:
    """Median seconds of one training step, from a 6-step run (the first step, warm-up, not counted)."""
    result = train_model(dataset, method, 0, device=device, progress=False, output_folder=output / "timing",
                         overwrite=True, num_epochs=1, iterations_per_epoch=6, max_val_pairs=1, batch_size=batch_size)
    history = load_checkpoint(result.output_folder / FINAL)["history"]
    return history[0]["seconds_training"] / 6.0


def prior_reference(raw, method, max_val_pairs: int) -> dict | None:
    """``{"val_cpm_10mm", "val_med_mm"}`` of the registration prior alone (the prior center as the prediction)
    on the validation pairs the trainer validates on (fold 0, the first ``max_val_pairs``); None for a dataset
    without pairs."""
    from lesionnet.evaluation.validation import tracking_validation_metrics
    from lesionnet.paths import preprocessed_folder_for
    from lesionnet.planning.plans_io import load_plans
    from lesionnet.preprocessing.loading import PreprocessedDataset
    from lesionnet.training.splits import fold_item_ids, load_or_create_splits

    folder = preprocessed_folder_for(raw.folder)
    section = load_plans(raw)["configurations"][method.name]
    data = PreprocessedDataset(raw, section["data_identifier"])
    _, val_ids = fold_item_ids(load_or_create_splits(folder, data.training_items()), 0)
    by_id = {p.pair_id: p for p in data.pairs()}
    pairs = [by_id[i] for i in val_ids[:max_val_pairs] if i in by_id]
    if not pairs:
        return None
    metrics = tracking_validation_metrics([p.prior_center_zyx for p in pairs], [p.target_center_zyx for p in pairs],
                                          [data.cached_case(p.target).geometry.spacing_zyx for p in pairs],
                                          [p.target_radius_mm for p in pairs], [p.pair_id for p in pairs])
    return {"val_cpm_10mm": metrics["cpm_10mm"], "val_med_mm": metrics["med_mm"]}


def plot(curve: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = curve["points"]
    steps = [p["iterations"] for p in points]
    fig, (ax_cpm, ax_med) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_cpm.plot(steps, [p["val_cpm_10mm"] for p in points], "o-", color="tab:blue", label="trained network")
    ax_med.plot(steps, [p["val_med_mm"] for p in points], "o-", color="tab:red", label="trained network")
    styles = (("gray", "--"), ("tab:green", ":"), ("tab:purple", "-."))
    for (name, ref), (color, style) in zip(curve.get("references", {}).items(), styles):
        ax_cpm.axhline(ref["val_cpm_10mm"], ls=style, lw=1.2, color=color, label=name)
        ax_med.axhline(ref["val_med_mm"], ls=style, lw=1.2, color=color, label=name)
    ax_cpm.set(xlabel="training iterations", ylabel="validation CPM@10mm (%)", ylim=(0, 100))
    ax_med.set(xlabel="training iterations", ylabel="validation MED (mm)")
    ax_med.set_ylim(bottom=0)
    for ax in (ax_cpm, ax_med):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{curve['method']} on {curve['dataset']} fold 0: {curve['validation_pairs']} validation pairs, "
                 f"batch {curve['batch_size']}, {curve['device']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="501")
    parser.add_argument("--method", default="tlt")
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget (default 60)")
    parser.add_argument("--points", type=int, default=12, help="validation points after the untrained one")
    parser.add_argument("--batch_size", type=int, default=None, help="default: the plan's")
    parser.add_argument("--learning_rate", type=float, default=None, help="default: the method's")
    parser.add_argument("--max_val_pairs", type=int, default=60)
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    parser.add_argument("--from_run", default=None,
                        help="no training: the curve of a finished run folder (e.g. the demo's fold_0)")
    parser.add_argument("--no_write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    configure_logging(False)
    set_cpu_threads(None)
    raw = resolve_raw_dataset(args.dataset)
    method = get_method(args.method, "tracking", "train")
    device = str(resolve_device(args.device))
    start = time.perf_counter()
    if args.from_run:
        run_folder, step = Path(args.from_run), None
    else:
        output = training_output_folder(raw.name, method.name, 0).parent / "learning_curve"
        step = seconds_per_step(raw.name, method, device, args.batch_size, output)
        iterations = max(1, int(args.minutes * 60.0 / step / args.points))
        print(f"{step:.2f} s per step: {args.points} epochs of {iterations} iterations for {args.minutes:g} min")
        run_folder = train_model(raw.name, method, 0, device=device, progress=False, output_folder=output / "run",
                                 overwrite=True, num_epochs=args.points, iterations_per_epoch=iterations,
                                 max_val_pairs=args.max_val_pairs, batch_size=args.batch_size,
                                 learning_rate=args.learning_rate).output_folder
    wall = time.perf_counter() - start
    checkpoint = load_checkpoint(run_folder / FINAL)
    history, config = checkpoint["history"], checkpoint["training_config"]
    untrained, iterations = checkpoint["initial_validation"], config["iterations_per_epoch"]
    budget = args.minutes if not args.from_run else sum(h["epoch_seconds"] for h in history) / 60.0
    points = [{"iterations": 0, "seconds": 0.0, **untrained}]
    seconds = 0.0
    for record in history:
        seconds += record["epoch_seconds"]
        points.append({"iterations": (record["epoch"] + 1) * iterations, "seconds": round(seconds, 1),
                       **{k: v for k, v in record.items() if k.startswith(("val_", "train_"))}})
    curve = {"dataset": raw.name, "method": method.name, "device": device, "machine": machine_description(),
             "budget_minutes": round(budget, 1), "seconds_per_step": step, "wall_seconds": round(wall, 1),
             "run": "trained here" if not args.from_run else "an existing run (--from_run)",
             "batch_size": config["batch_size"], "learning_rate": config["learning_rate"],
             "validation_pairs": int(untrained.get("val_n", 0)), "points": points,
             "references": {"untrained": {k: untrained[k] for k in ("val_cpm_10mm", "val_med_mm")}}}
    prior = prior_reference(raw, method, int(untrained.get("val_n", 0)))
    if prior:
        curve["references"]["registration prior"] = prior
    for p in points:
        print(f"{p['iterations']:6d} it  {p['seconds']:7.0f} s  CPM@10mm {p['val_cpm_10mm']:5.1f} %  "
              f"MED {p['val_med_mm']:6.2f} mm")
    if args.no_write:
        return 0
    stem = ROOT / "benchmarks" / "results" / f"learning_curve_{raw.name.split('_')[0][len('Dataset'):]}"
    write_json(stem.with_suffix(".json"), curve)
    plot(curve, stem.with_suffix(".png"))
    first, last = points[0], points[-1]
    command = (f"--from_run .../{run_folder.parent.name}/{run_folder.name}" if args.from_run
               else f"--minutes {args.minutes:g}")
    body = (f"`python benchmarks/learning_curve.py {command}` on {curve['machine']} ({device}): "
            f"the planned {method.name} on {raw.name} fold 0, {len(history)} epochs of {iterations} iterations "
            f"(batch {curve['batch_size']}, lr {curve['learning_rate']:g}), validated on "
            f"{curve['validation_pairs']} pairs after each epoch.\n\n"
            f"![learning curve](../benchmarks/results/{stem.name}.png)\n\n"
            f"Validation CPM@10mm {first['val_cpm_10mm']:.1f} % (untrained) -> {last['val_cpm_10mm']:.1f} % after "
            f"{last['iterations']} iterations ({last['seconds'] / 60:.0f} min of training); MED "
            f"{first['val_med_mm']:.2f} -> {last['val_med_mm']:.2f} mm"
            + (f"; the registration prior alone on the same pairs: {prior['val_cpm_10mm']:.1f} %, "
               f"{prior['val_med_mm']:.2f} mm" if prior else "")
            + f". Data: `benchmarks/results/{stem.name}.json`.")
    replace_section(ROOT / "documentation" / "benchmarks.md", "Learning curve", body)
    print(f"wrote {stem}.json, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
