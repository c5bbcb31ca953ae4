"""The ``tlt`` method: everything the generic layers need to plan, train, validate and run TLT.

* plan: :func:`lesionnet.methods.tlt.planning.plan`; memory: :mod:`lesionnet.methods.tlt.memory`;
* presets: ``small`` (a CPU-sized network: same structure, narrower extractor, 2 layers per line) and
  ``tiny`` (tests), as overrides of the plan's ``network`` with as many stages as the planned stride;
  the plan's SSS threshold and fine matching head are kept (on a CPU the plan itself is CPU-sized);
* build: :func:`~lesionnet.methods.tlt.network.build_tlt` + :class:`~lesionnet.methods.tlt.loss.TLTLoss`,
  decoding with ``predict_center``;
* batches: paired samples around the planned registration prior (:mod:`lesionnet.training.pair_sampling`) with TLT's
  Gaussian; validation: tracking the fold's validation pairs on the preprocessed grids, the best
  checkpoint at the lowest validation MED;
* predictor: :class:`~lesionnet.methods.tlt.predictor.TLTCaseTracker`.
"""
from __future__ import annotations

import math

import numpy as np

from lesionnet.evaluation.validation import PatchTrackerValidation
from lesionnet.methods.base import Method
from lesionnet.methods.tlt import memory, planning
from lesionnet.methods.tlt.loss import TLTLoss
from lesionnet.methods.tlt.maps import lesion_gaussian
from lesionnet.methods.tlt.network import build_tlt
from lesionnet.methods.tlt.predictor import TLTCaseTracker
from lesionnet.methods.tlt.tracker import track_lesion
from lesionnet.training.batch_stream import SeededBatchLoader, make_batch_stream
from lesionnet.training.built_model import BuiltModel
from lesionnet.training.pair_augmentation import PairAugmentation
from lesionnet.training.pair_sampling import PairBatchMaker, PairSampler


def _preset(stem_widths, width: int, **network):
    """A preset: network overrides with as many extractor stages as the plan's feature stride needs."""
    def overrides(section: dict) -> dict:
        stages = int(round(math.log2(int(section.get("feature_stride", 8)))))
        return {"network": {"channels": list(stem_widths[:stages]) + [width], **network}}
    return overrides


#: network presets as overrides of the plan section (the plan's stride, SSS threshold, fine head kept)
PRESETS = {
    "plan": {},
    # the paper's architecture at the planned size: SSS, CAT, RAAM and the global regression, no lesionnet head
    "paper": {"network": {"fine_matching": False, "gaussian_input_channels": False}},
    "small": _preset((16, 32, 48, 64), 64, num_heads=4, layers_per_line=2, ffn_dim=128, head_hidden=64,
                     head_layers=2, dropout=0.0, stem_kernel=3),
    "tiny": _preset((8, 16, 16, 24), 24, num_heads=4, layers_per_line=1, ffn_dim=48, head_hidden=24, head_layers=2,
                    dropout=0.0, stem_kernel=3),
}
INPUT_KEYS = ("template", "template_gaussian", "search", "search_prior")


class TLTMethod(PatchTrackerValidation, Method):
    name = "tlt"
    task = "tracking"
    description = "Transformer Lesion Tracker (MICCAI 2022)"
    trainable = True
    predicts = True
    makes_heatmaps = True
    presets = PRESETS
    selection_metric = ("med_mm", "min")
    track_function = staticmethod(track_lesion)
    memory_driven_keys = planning.MEMORY_DRIVEN_KEYS
    #: the demo's TLT training on a CPU: the planned network (CPU-sized by the plan), 16 epochs of 30 steps
    #: of 4 pairs — about 16 minutes on 2 cores
    demo_training = {"preset": "plan", "num_epochs": 16, "iterations_per_epoch": 30, "batch_size": 4,
                     "learning_rate": 5e-4, "max_val_pairs": 40, "seed": 0}

    # ------------------------------------------------------------------------------- planning
    def plan(self, context) -> dict:
        return planning.plan(context)

    def memory(self, section: dict, device: str):
        template, search = section["template_patch_size_zyx"], section["search_patch_size_zyx"]
        tokens = min(section["max_template_tokens"], int(np.prod([t // section["feature_stride"] for t in template])))
        return memory.training_step_memory(template, search, section["batch_size"], template_tokens=tokens,
                                           device=device, **section["network"])

    def summary(self, section: dict, data_configuration: dict | None) -> str:
        net = section["network"]
        spacing = "x".join(f"{v:.2f}" for v in (data_configuration or {}).get("target_spacing_zyx", []))
        return (f"tlt: spacing {spacing} mm, template {section['template_patch_size_zyx']}, search "
                f"{section['search_patch_size_zyx']}, Tr {net['sss_threshold']}, depth {net['layers_per_line']}, "
                f"heads {net['num_heads']}, width {net['channels'][-1]}, batch {section['batch_size']}")

    # ------------------------------------------------------------------------------- training
    def build(self, section: dict) -> BuiltModel:
        network = build_tlt(section["network"])
        loss = TLTLoss(stride=network.output_stride)

        def criterion(outputs: dict, batch: dict) -> dict:
            losses = loss(outputs, batch["target_center_zyx"], batch["target_radius_mm"], batch["spacing_zyx"])
            return {"loss": losses["loss"], "focal": losses["focal"].detach(), "l1_mm": losses["l1_mm"].detach()}

        return BuiltModel(network, criterion, network.predict_center, INPUT_KEYS)

    def training_defaults(self, section: dict) -> dict:
        return {"batch_size": int(section.get("batch_size", 2)), "augmentation": PairAugmentation().to_dict()}

    def batches(self, data, item_ids, section: dict, config, first_batch: int):
        augmentation = PairAugmentation.from_dict(config.augmentation)
        jitter = augmentation.prior_jitter_mm if augmentation.enabled else 0.0
        offset = augmentation.search_offset_fraction if augmentation.enabled else 0.0
        sampler = PairSampler(data.cached_case, section["template_patch_size_zyx"], section["search_patch_size_zyx"],
                              lesion_gaussian, search_offset_fraction=offset, prior_jitter_mm=jitter)
        loader = SeededBatchLoader(data.pairs_by_id(item_ids), PairBatchMaker(sampler, augmentation),
                                   config.batch_size, config.seed, first_batch, config.num_workers)
        return make_batch_stream(loader, config.num_workers)


    # ------------------------------------------------------------------------------- prediction
    def predictor(self, request) -> TLTCaseTracker:
        return TLTCaseTracker(request.models, request.device, request.step_size, request.search_region_zyx,
                              request.heatmap_folder)


TLT = TLTMethod()

__all__ = ["TLTMethod", "TLT", "PRESETS", "INPUT_KEYS"]
