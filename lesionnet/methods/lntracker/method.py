"""The ``lntracker`` method: LN-Tracker's plan, training and validation for the generic layers.

* plan: :func:`lesionnet.methods.lntracker.planning.plan` (native-z preprocessing, patch, queries, slice
  context, width and depth from the memory budget); memory: :mod:`lesionnet.methods.lntracker.memory`;
* presets: ``small`` (a CPU-sized network for the demo), ``tiny`` (tests), overrides of the plan, and the
  paper's ablations at the ``small`` size (``small_no_mask``, ``small_no_similarity``);
* build: :func:`~lesionnet.methods.lntracker.network.build_lntracker` +
  :class:`~lesionnet.methods.lntracker.criterion.LNTrackerLoss`;
* batches: chains of 3 adjacent slices of the fold's training scans
  (:class:`~lesionnet.methods.lntracker.slices.SliceChainSampler`), so that track queries are trained
  over two steps, as they run at inference;
* validation: Algorithm 1 on whole validation scans, scored with the detection metrics against the
  preprocessed instance masks (AS, sens@k, AP@0.1); ``checkpoint_best`` has the highest AS.
"""
from __future__ import annotations

import numpy as np

from lesionnet.evaluation.boxes3d import instance_boxes
from lesionnet.evaluation.detection_metrics import evaluate_detection
from lesionnet.methods.base import Method
from lesionnet.methods.lntracker import memory, planning
from lesionnet.methods.lntracker.criterion import LNTrackerLoss, LossWeights
from lesionnet.methods.lntracker.inference import track_volume
from lesionnet.methods.lntracker.network import LNTrackerConfig, build_lntracker
from lesionnet.methods.lntracker.predictor import LNTrackerScanDetector
from lesionnet.methods.lntracker.slices import SliceBatchMaker, SliceChainSampler
from lesionnet.methods.lntracker.tracklets import tracklets_to_record
from lesionnet.training.batch_stream import SeededBatchLoader, make_batch_stream
from lesionnet.training.built_model import BuiltModel

#: network presets as overrides of the plan section (the plan's data, slice context and thresholds kept)
PRESETS = {
    "plan": {},
    "small": {"hidden_dim": 64, "encoder_layers": 1, "decoder_layers": 3, "num_queries": 30, "ffn_dim": 128,
              "backbone_widths": [16, 32, 64], "batch_size": 4},
    "tiny": {"hidden_dim": 32, "encoder_layers": 1, "decoder_layers": 2, "num_queries": 20, "ffn_dim": 64,
             "backbone_widths": [8, 16, 32], "patch_size_yx": [64, 64], "batch_size": 2},
}
#: the paper's ablations, at the ``small`` size: detection queries that see the track queries, and no
#: similarity loss (tracks then end on their score alone: τ_sim 0)
PRESETS["small_no_mask"] = {**PRESETS["small"], "attention_mask": False}
PRESETS["small_no_similarity"] = {**PRESETS["small"], "similarity_loss_weight": 0.0, "thresholds": {"tau_sim": 0.0}}
INPUT_KEYS = ("images", "boxes", "ids")
#: slices per training chain: tracks are trained over two steps, as they run at inference
CHAIN_LENGTH = memory.TRAINING_CHAIN_LENGTH


def network_config(section: dict) -> LNTrackerConfig:
    """The network of a plan section: its sizes, DETR's head count (8 at width 256, else 4), an FFN of
    four times the width and the backbone widths (32, 64, 128, 256) unless the section says otherwise (the
    defaults of :func:`lesionnet.methods.lntracker.memory.network_sizes`, so that the memory model counts
    this network)."""
    sizes = memory.network_sizes(section)
    return LNTrackerConfig(
        num_input_slices=int(section["num_input_slices"]), hidden_dim=sizes["hidden_dim"],
        encoder_layers=sizes["encoder_layers"], decoder_layers=sizes["decoder_layers"], num_heads=sizes["num_heads"],
        ffn_dim=sizes["ffn_dim"], num_queries=sizes["num_queries"], backbone_widths=sizes["backbone_widths"],
        attention_mask=bool(section.get("attention_mask", True)))


class LNTrackerMethod(Method):
    name = "lntracker"
    task = "detection"
    description = "LN-Tracker (CVPR 2025), 3D detection by tracking along z"
    trainable = True
    predicts = True
    presets = PRESETS
    selection_metric = ("AS", "max")
    #: rows the demo and the detection benchmark add next to the method: the paper's baseline, the same
    #: trained detector with its per-slice boxes linked by 2D IoU instead of track queries, and Algorithm 1
    #: as printed (the paper's thresholds, no re-attach)
    demo_variants = {"merging": {"linking": "merging"},
                     "algorithm1": {"thresholds": dict(planning.PAPER_THRESHOLDS)}}
    #: the demo's LN-Tracker on a CPU: the ``small`` network, 40 epochs of 130 steps of 4 three-slice chains
    #: — about 25 minutes on 2 cores
    demo_training = {"preset": "small", "num_epochs": 40, "iterations_per_epoch": 130, "batch_size": 4,
                     "learning_rate": 2e-4, "seed": 0}
    memory_driven_keys = planning.MEMORY_DRIVEN_KEYS

    # ------------------------------------------------------------------------------- planning
    def plan(self, context) -> dict:
        return planning.plan(context)

    def memory(self, section: dict, device: str):
        return memory.training_step_memory(section["patch_size_yx"], section["batch_size"],
                                           **memory.network_sizes(section), device=device)

    def summary(self, section: dict, data_configuration: dict | None) -> str:
        spacing = "x".join("native" if v is None else f"{v:.2f}" for v in (data_configuration or {}).get(
            "target_spacing_zyx", []))
        return (f"lntracker: spacing {spacing} mm, patch {section['patch_size_yx']}, {section['num_input_slices']} "
                f"slices, {section['num_queries']} queries, width {section['hidden_dim']}, encoder "
                f"{section['encoder_layers']} / decoder {section['decoder_layers']} layers, batch "
                f"{section['batch_size']}")

    # ------------------------------------------------------------------------------- training
    def build(self, section: dict) -> BuiltModel:
        network = build_lntracker(network_config(section))
        loss = LNTrackerLoss(LossWeights(similarity=float(section.get("similarity_loss_weight", 1.0))))
        return BuiltModel(network, loss, lambda outputs: outputs["passes"][-1]["out"]["boxes"], INPUT_KEYS)

    def training_defaults(self, section: dict) -> dict:
        return {"batch_size": int(section.get("batch_size", 2)), "optimizer": "adamw", "learning_rate": 2e-4,
                "weight_decay": 1e-4, "grad_clip_norm": 0.1, "augmentation": {"enabled": True}}

    def batches(self, data, item_ids, section: dict, config, first_batch: int):
        sampler = SliceChainSampler(data.cached_case, section["patch_size_yx"], section["slices_per_side"],
                                    int(section.get("training_chain_length", CHAIN_LENGTH)),
                                    augment=bool(config.augmentation.get("enabled", True)))
        loader = SeededBatchLoader(list(item_ids), SliceBatchMaker(sampler), config.batch_size, config.seed,
                                   first_batch, config.num_workers)
        return make_batch_stream(loader, config.num_workers)

    def validation_records(self, model: BuiltModel, data, item_ids, section: dict, device) -> list[dict]:
        """Per validation scan: Algorithm 1's boxes ``(n, 6)`` and scores and the true boxes (preprocessed grid)."""
        records = []
        for scan_id in item_ids:
            case = data.cached_case(scan_id)
            tracklets = track_volume(model.network, case.image, section["slices_per_side"], section["thresholds"],
                                     device)
            record = tracklets_to_record(tracklets)
            records.append({"scan_id": scan_id, "boxes": np.asarray(record["boxes_xyz"]).reshape(-1, 6),
                            "scores": np.asarray(record["scores"]), "truth": instance_boxes(np.asarray(case.seg))[1]})
        return records

    def validation_summary(self, records: list[dict]) -> dict:
        """Detection metrics of the records (of one or several processes); ``{}`` without any true box."""
        if not sum(len(r["truth"]) for r in records):
            return {}
        result = evaluate_detection({r["scan_id"]: (r["boxes"], r["scores"]) for r in records},
                                    {r["scan_id"]: r["truth"] for r in records})
        return {k: result[k] for k in ("AS", "sens@1", "sens@2", "sens@4", "sens@8", "AP@0.1")} | \
            {"boxes_per_scan": result["n_predictions"] / result["n_scans"]}

    def validate(self, model: BuiltModel, data, item_ids, section: dict, device) -> dict:
        """Detection metrics of Algorithm 1 on the validation scans (preprocessed grid)."""
        return self.validation_summary(self.validation_records(model, data, item_ids, section, device))

    # ------------------------------------------------------------------------------- prediction
    def predictor(self, request) -> LNTrackerScanDetector:
        return LNTrackerScanDetector(request.models, request.device, **request.options)


LNTRACKER = LNTrackerMethod()

__all__ = ["PRESETS", "INPUT_KEYS", "CHAIN_LENGTH", "network_config", "LNTrackerMethod", "LNTRACKER"]
