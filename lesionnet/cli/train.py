"""``lesionnet_train DATASET METHOD FOLD``: train a registered method (thin wrapper over lesionnet.training)."""
from __future__ import annotations

import argparse
import logging
import sys

from lesionnet.cli.entry import command_line, run_command
from lesionnet.methods import describe_methods, get_method, methods_with
from lesionnet.planning.plans_io import DEFAULT_PLANS_NAME
from lesionnet.training.distributed import is_main_process
from lesionnet.training.run_training import set_cpu_threads, train_model

logger = logging.getLogger("lesionnet_train")


def _fold(value: str):
    return value if value == "all" else int(value)


def _trainable_method(name: str):
    """A registered method that can be trained; the argparse error says why not and lists the others."""
    try:
        return get_method(name, capability="train")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    trainable = methods_with(capability="train")
    presets = sorted({name for m in trainable for name in m.presets})
    parser = argparse.ArgumentParser(
        prog="lesionnet_train",
        description="Train a method on a preprocessed dataset (run lesionnet_plan_and_preprocess first). "
                    "Results go to $lesionnet_results/<dataset>/<method>__<plans>/fold_<FOLD>/. "
                    f"Trainable methods: {describe_methods(capability='train')}.")
    parser.add_argument("dataset", help="dataset id (501) or name")
    parser.add_argument("method", type=_trainable_method, metavar="{" + ",".join(m.name for m in trainable) + "}",
                        help="method to train (must fit the dataset's task)")
    parser.add_argument("fold", type=_fold, help="cross-validation fold 0-4, or 'all' (no validation)")
    parser.add_argument("--epochs", type=int, default=None, help="number of epochs (default 100)")
    parser.add_argument("--iterations", type=int, default=None, help="iterations per epoch (default 250)")
    parser.add_argument("--batch_size", type=int, default=None, help="default: the plan's")
    parser.add_argument("--lr", type=float, default=None, help="initial learning rate (default 1e-4, Adam)")
    parser.add_argument("--c", dest="resume", action="store_true",
                        help="continue from checkpoint_latest.pth of this fold (with the settings it was started with)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a fold that already holds a model (the old one is removed only once the new "
                             "run has written its first checkpoint)")
    parser.add_argument("--seed", type=int, default=None, help="seed (default 0); CPU runs are repeatable")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--plans", default=DEFAULT_PLANS_NAME, help="plans name (default lesionnet_plans)")
    parser.add_argument("--preset", default="plan",
                        help="network: 'plan' (as planned) or one of the method's presets "
                             f"({', '.join(p for p in presets if p != 'plan')}: the paper's architecture at the "
                             "planned size, smaller networks for CPUs and tests)")
    parser.add_argument("-np", "--num_workers", type=int, default=None,
                        help="data-loading worker processes (default 0: in the training process)")
    parser.add_argument("--max_val_pairs", type=int, default=None,
                        help="validate on at most this many items (pairs) of the fold")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads per process (default with --num_processes: cores / processes)")
    parser.add_argument("--num_processes", type=int, default=1,
                        help="data-parallel training processes on this machine (torch.distributed: gloo on CPU, "
                             "NCCL on GPU); the global --batch_size is split among them. Under torchrun leave it "
                             "out: torchrun starts the processes (see documentation/training.md)")
    parser.add_argument("--bf16", dest="precision", action="store_const", const="bf16", default=None,
                        help="bfloat16 autocast of the forward pass and the loss (CUDA; fp32 elsewhere)")
    parser.add_argument("--compile", action="store_true", default=None,
                        help="torch.compile the network for training (CUDA; off elsewhere)")
    parser.add_argument("--check_replicas", action="store_true",
                        help="with several processes: check after every step that all hold identical weights")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars")
    options: dict = {}
    for m in trainable:
        for option, variants in getattr(m, "option_variants", {}).items():
            options.setdefault(option, {}).update(variants)
    for option, variants in sorted(options.items()):
        parser.add_argument(f"--{option}", choices=list(variants), default=None,
                            help="selects the variant: " + ", ".join(f"{v} -> {name}" for v, name in variants.items()))
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    hint = command_line("lesionnet_train", argv, add=["--c"], drop=["--overwrite"])
    return run_command("lesionnet_train", lambda: _train(args), args.verbose, interrupted_hint=hint)


def selected_variant(args: argparse.Namespace):
    """The method to train: the one named, or the variant its ``--option value`` selects (``option_variants``)."""
    method = args.method
    for option in sorted({o for m in methods_with(capability="train") for o in getattr(m, "option_variants", {})}):
        value = getattr(args, option, None)
        if value is None:
            continue
        variants = getattr(method, "option_variants", {}).get(option)
        if variants is None:
            raise ValueError(f"--{option} is not an option of '{method.name}'.")
        method = get_method(variants[value], capability="train")
    return method


def _train(args: argparse.Namespace) -> int:
    if args.num_processes < 1:
        raise ValueError(f"--num_processes must be >= 1, got {args.num_processes}.")
    set_cpu_threads(args.threads)
    args.method = selected_variant(args)
    result = train_model(args.dataset, args.method, args.fold,
                         plans_name=args.plans, preset=args.preset, resume=args.resume, overwrite=args.overwrite,
                         device=args.device,
                         progress=not args.no_progress, num_epochs=args.epochs,
                         iterations_per_epoch=args.iterations, batch_size=args.batch_size,
                         learning_rate=args.lr, seed=args.seed, num_workers=args.num_workers,
                         max_val_pairs=args.max_val_pairs, precision=args.precision, compile=args.compile,
                         num_processes=args.num_processes,
                         check_replicas=args.check_replicas, threads_per_process=args.threads)
    if not is_main_process():              # under torchrun rank 0 reports
        return 0
    best = result.best_metric or {}
    best_text = "n/a" if best.get("value") is None else f"{best['name']} {best['value']:.4g}"
    print(f"Trained {args.method.name} fold {args.fold}: {result.output_folder} (best {best_text})")
    return 0

if __name__ == "__main__":
    sys.exit(main())
