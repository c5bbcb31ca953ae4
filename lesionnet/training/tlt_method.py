"""TLT as a method of the shared trainer: network from the plan, paired batches, TLT loss, validation by
tracking the fold's validation pairs on the preprocessed grids (DLS metrics in mm)."""
from __future__ import annotations

import logging

import numpy as np
import torch

from lesionnet.evaluation.tracking_metrics import evaluate_tracking
from lesionnet.inference.tlt_tracker import track_lesion
from lesionnet.networks.tlt import TLTConfig, build_tlt
from lesionnet.preprocessing.loading import PreprocessedPair
from lesionnet.training.config import TrainingConfig
from lesionnet.training.losses import TLTLoss
from lesionnet.training.tlt_data import CaseCache, PairBatchLoader, PairSampler, make_batch_stream

logger = logging.getLogger(__name__)


def validation_metrics(predicted_xyz, pairs: list[PreprocessedPair], spacings_xyz) -> dict:
    """``{"cpm_10mm", "cpm_radius", "med_mm", "med_std_mm", "n"}`` (percent, mm) of predictions on the
    preprocessed grids, with the benchmark's conventions (:func:`evaluate_tracking`)."""
    evaluation = evaluate_tracking(np.asarray(predicted_xyz), [p.target_center_xyz for p in pairs],
                                   np.asarray(spacings_xyz), [p.target_radius_mm for p in pairs],
                                   [p.pair_id for p in pairs])
    s = evaluation.summary()
    return {"cpm_10mm": s["CPM@10mm"], "cpm_radius": s["CPM@Radius"], "med_mm": s["MED"],
            "med_std_mm": s["MED_std"], "n": s["n"]}


class TLTMethod:
    """The TLT parts of training (see :class:`lesionnet.training.trainer.TrainingMethod`).

    Args:
        load_case: ``scan_id -> PreprocessedCase`` of the plan's data folder.
        configuration: the plan's ``tlt`` configuration (patch sizes, ``network``).
        train_pairs, val_pairs: preprocessed pairs of the fold.
        network_config: the TLT configuration dict (default: the plan's ``network``).
    """

    name = "tlt"

    def __init__(self, load_case, configuration: dict, train_pairs: list, val_pairs: list,
                 network_config: dict | None = None):
        self.configuration = configuration
        self.network_config = dict(network_config or configuration["network"])
        self.train_pairs = list(train_pairs)
        self.val_pairs = list(val_pairs)
        self.template_size = configuration["template_patch_size_zyx"]
        self.search_size = configuration["search_patch_size_zyx"]
        self.cases = CaseCache(lambda scan_id: load_case(scan_id, as_numpy=True))
        self.loss = TLTLoss(stride=TLTConfig.from_dict(self.network_config).output_stride)

    def build_network(self) -> torch.nn.Module:
        return build_tlt(self.network_config)

    def batches(self, config: TrainingConfig, first_batch: int):
        jitter = config.augmentation.prior_jitter_mm if config.augmentation.enabled else 0.0
        sampler = PairSampler(self.cases, self.template_size, self.search_size, kind="tlt", prior_jitter_mm=jitter)
        loader = PairBatchLoader(self.train_pairs, sampler, config.batch_size, config.seed, first_batch,
                                 config.augmentation, config.num_workers)
        return iter(make_batch_stream(loader, config.num_workers))

    def compute_loss(self, network, batch: dict, device) -> dict:
        def t(key):
            return torch.as_tensor(batch[key], device=device)
        outputs = network(t("template"), t("template_gaussian"), t("search"), t("search_prior"))
        losses = self.loss(outputs, t("target_center_zyx"), t("target_radius_mm"), t("spacing_zyx"))
        return {"loss": losses["loss"], "focal": losses["focal"].detach(), "l1_mm": losses["l1_mm"].detach()}

    def validate(self, network, device) -> dict:
        pairs = self.val_pairs
        if not pairs:
            return {}
        predicted, spacings = [], []
        for pair in pairs:
            source, target = self.cases(pair.source), self.cases(pair.target)
            result = track_lesion(network, source.image, pair.source_center_xyz, pair.source_radius_mm,
                                  source.geometry.spacing_xyz, target.image, pair.prior_center_xyz,
                                  pair.prior_radius_mm, target.geometry.spacing_xyz, self.template_size,
                                  self.search_size, device=device)
            predicted.append(result.center_xyz)
            spacings.append(target.geometry.spacing_xyz)
        return validation_metrics(predicted, pairs, spacings)
