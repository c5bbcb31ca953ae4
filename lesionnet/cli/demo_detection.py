"""The detection part of ``lesionnet_demo``: the built-in synthetic lymph-node dataset end to end.

Steps, each skipped when its output already exists:

1. generate Dataset502_SynthLymphNodes (as ``lesionnet_make_synthetic -d 502``, with 32 cases instead of
   20 and half of them held out: the 16 training scans of the default dataset and 16 test scans, enough
   lymph nodes for paired tests between detectors) and check it;
2. fingerprint, plan and preprocess it (``lesionnet_plan_and_preprocess -d 502``);
3. train every registered trainable detection method on fold 0 with its ``demo_training`` settings
   (``lesionnet_train 502 METHOD 0 ...``; a finished run is reused);
4. detect on the test scans with each method, its untrained network (``<name>_untrained``) and its
   ``demo_variants`` (LN-Tracker: ``lntracker_merging``, the same detector with 2D-IoU merging instead of
   track queries, and ``lntracker_algorithm1``, Algorithm 1 as printed) through ``lesionnet_predict``,
   score them (``lesionnet_evaluate_detection``) side by side, and compare each trained method with its
   untrained network and its variants (exact McNemar test on the lesions found at ≤ 4 false positives
   per scan);
5. write the comparison (JSON and Markdown) to ``$lesionnet_results/Dataset502_SynthLymphNodes/demo``.
"""
from __future__ import annotations

import logging

from lesionnet import paths
from lesionnet.cli.demo_data import prepare_demo_dataset
from lesionnet.datasets.synthetic import LymphNodeConfig, generate_lymph_node_dataset
from lesionnet.evaluation.detection_comparison import compare_detectors, comparison_markdown, detection_entries
from lesionnet.methods import methods_with
from lesionnet.utils.files import write_json, write_text

logger = logging.getLogger("lesionnet_demo")
DETECTION_DATASET_ID = 502
#: the demo's Dataset502: cases 0-15 (training) are those of the default dataset, 16-31 are test scans
DEMO_LYMPH_NODES = {"num_patients": 32, "test_fraction": 0.5}


def detection_demo_methods() -> list:
    """The trainable detection methods that can predict and have ``demo_training`` settings."""
    return [m for m in methods_with("detection", "predict") if m.trainable and m.demo_training]


def run_detection_demo(train, seed: int = 0, progress: bool = True) -> dict:
    """Run the detection demo (see the module docstring); ``train(method, dataset_folder, progress)`` is
    the demo's training step. Returns :func:`compare_detectors`'s result with ``"training"``."""
    from lesionnet.cli.plan_and_preprocess import run as plan_and_preprocess

    methods = detection_demo_methods()
    if not methods:
        return {}
    logger.info("Detection 1/4: the synthetic lymph-node dataset")
    dataset_folder = prepare_demo_dataset(DETECTION_DATASET_ID, lambda folder, **kw: generate_lymph_node_dataset(
        folder, LymphNodeConfig(**DEMO_LYMPH_NODES), **kw), "lymph-node", seed, progress)
    logger.info("Detection 2/4: fingerprint, plans and preprocessing")
    plan_and_preprocess(DETECTION_DATASET_ID, progress=progress)
    training = {m.name: train(m, dataset_folder, progress) for m in methods}
    entries, comparisons = [], []
    for method in methods:
        rows = detection_entries(method, dataset_folder.name)
        entries += rows
        comparisons += [(method.name, label) for label, *_ in rows if label != method.name]
    output_folder = paths.results_dir() / dataset_folder.name / "demo"
    logger.info("Detection 4/4: detecting on the test scans with %s", ", ".join(label for label, *_ in entries))
    results = compare_detectors(dataset_folder, output_folder / "predictions", entries, comparisons,
                                progress=progress)
    results["training"] = training
    write_json(output_folder / "comparison.json", results)
    write_text(output_folder / "comparison.md", comparison_markdown(results) + "\n")
    logger.info("Wrote %s", output_folder / "comparison.md")
    return results


__all__ = ["DETECTION_DATASET_ID", "detection_demo_methods", "run_detection_demo"]
