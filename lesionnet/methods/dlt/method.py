"""The ``dlt`` method and its training-mode variants ``dlt_ssl`` and ``dlt_mix``: everything the generic layers
need to plan, train, validate and run DLT.

The three are registered methods that share the ``dlt`` plan section and differ in their training mode only
(supervised pairs; self-supervised pairs from single scans; supervised with a self-supervised batch at
p = τ); each trains into its own results folder and predicts as ``-m <name>``. ``lesionnet_train 501 dlt
0 --mode ssl`` selects ``dlt_ssl``.

* plan: :func:`lesionnet.methods.dlt.planning.plan`; memory: :mod:`lesionnet.methods.dlt.memory`;
* presets: ``small`` (a CPU-sized DenseFPN: growth 8, blocks (2, 3, 4), FPN width 32) and ``tiny``
  (tests), plus the paper's ablations on the planned network: ``no_global_kernel``, ``no_anatomy``,
  ``middle_slice`` and ``full_correlation`` (Eq. 5 instead of the fast Eq. 6), and each of them on the
  ``small`` network (``small_no_anatomy``, ...);
* build: :func:`~lesionnet.methods.dlt.network.build_dlt` with the focal loss of
  :func:`~lesionnet.methods.dlt.loss.dlt_loss`;
* batches: :class:`~lesionnet.methods.dlt.sampling.DLTBatchMaker` in the variant's training mode (stored with
  the center augmentation, τ and the crop offset in the training config's ``augmentation`` dict);
* validation and prediction: :func:`lesionnet.methods.dlt.tracker.track_lesion` on the fold's validation
  pairs (best checkpoint at the lowest validation MED) and through the shared
  :class:`~lesionnet.inference.patch_case_tracker.PatchCaseTracker`.
"""
from __future__ import annotations

from lesionnet.evaluation.validation import PatchTrackerValidation
from lesionnet.inference.patch_case_tracker import PatchCaseTracker
from lesionnet.methods.base import Method
from lesionnet.methods.dlt import memory, planning
from lesionnet.methods.dlt.loss import dlt_loss
from lesionnet.methods.dlt.network import build_dlt
from lesionnet.methods.dlt.sampling import (
    CENTER_SHIFT_FRACTION,
    MIX_SSL_PROBABILITY,
    MODES,
    CenterShiftSampler,
    DLTBatchMaker,
    SelfSupervisedSampler,
    scan_lesions,
)
from lesionnet.methods.dlt.tracker import track_lesion
from lesionnet.training.batch_stream import SeededBatchLoader, make_batch_stream
from lesionnet.training.built_model import BuiltModel
from lesionnet.training.pair_augmentation import PairAugmentation

PRESETS = {
    "plan": {},
    "small": {"network": {"growth_rate": 8, "block_layers": [2, 3, 4], "bn_size": 4, "fpn_width": 32,
                          "stem_kernel": 3}},
    "tiny": {"network": {"growth_rate": 4, "block_layers": [1, 1, 1], "bn_size": 2, "fpn_width": 8, "stem_kernel": 3}},
    "no_global_kernel": {"network": {"global_kernel": "none"}},
    "no_anatomy": {"network": {"anatomy_encoder": False}},
    "middle_slice": {"network": {"global_kernel": "middle_slice"}},
    "full_correlation": {"network": {"global_kernel": "full"}},
}
# the ablations on the CPU-sized network, as the CPU experiments run them (documentation/methods/dlt.md)
PRESETS.update({f"small_{name}": {"network": {**PRESETS["small"]["network"], **PRESETS[name]["network"]}}
                for name in ("no_global_kernel", "no_anatomy", "middle_slice", "full_correlation")})
INPUT_KEYS = ("template", "template_gaussian", "template_center_zyx", "search", "search_prior")
#: DLT's training options (the ``augmentation`` dict of its TrainingConfig; the mode is the variant's): the
#: paper's center augmentation and τ, the search-crop offset (a fraction of the patch) and the pair augmentation
DEFAULT_OPTIONS = {"mode": "supervised", "center_shift_fraction": CENTER_SHIFT_FRACTION,
                   "ssl_probability": MIX_SSL_PROBABILITY, "search_offset_fraction": 0.25, "anatomy_dropout": 0.0,
                   "prior_follows_shift": False}
#: the registered variants, by training mode
VARIANTS = {"supervised": "dlt", "ssl": "dlt_ssl", "mix": "dlt_mix"}
DESCRIPTIONS = {"supervised": "Deep Lesion Tracker (CVPR 2021), supervised on annotated pairs",
                "ssl": "DLT trained self-supervised: pairs from one scan and its augmented copy (no pair annotations)",
                "mix": "DLT-Mix: supervised, with a self-supervised batch at probability 0.25"}


def training_options(config, mode: str = "supervised") -> dict:
    """DLT's options from a TrainingConfig's ``augmentation`` dict, defaults filled in (the training mode:
    ``mode``, the variant's); unknown keys, unknown modes and a mode other than ``mode`` are errors naming
    them."""
    given = dict(config.augmentation or {})
    pair = given.pop("pair", None)
    unknown = sorted(set(given) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ValueError(f"unknown DLT training options {unknown}; known: {sorted(DEFAULT_OPTIONS) + ['pair']}")
    options = {**DEFAULT_OPTIONS, "mode": mode, **given}
    if options["mode"] not in MODES:
        raise ValueError(f"DLT --mode must be one of {MODES}, got {options['mode']!r}")
    if options["mode"] != mode:
        raise ValueError(f"the training options ask for DLT mode '{options['mode']}', but this is "
                         f"'{VARIANTS[mode]}' (mode '{mode}'); train '{VARIANTS[options['mode']]}' instead "
                         f"(lesionnet_train ... dlt FOLD --mode {options['mode']}).")
    options["pair"] = PairAugmentation.from_dict(pair) if pair else PairAugmentation()
    return options


class DLTMethod(PatchTrackerValidation, Method):
    """DLT in one training mode (see the module docstring)."""

    task = "tracking"
    trainable = True
    predicts = True
    makes_heatmaps = True
    presets = PRESETS
    selection_metric = ("med_mm", "min")
    track_function = staticmethod(track_lesion)
    memory_driven_keys = planning.MEMORY_DRIVEN_KEYS
    option_variants = {"mode": VARIANTS}
    #: the demo's DLT training on a CPU (each mode): the ``small`` DenseFPN, 8 epochs of 100 steps of 4 pairs
    demo_training = {"preset": "small", "num_epochs": 8, "iterations_per_epoch": 100, "batch_size": 4,
                     "learning_rate": 5e-4, "max_val_pairs": 40, "seed": 0}

    def __init__(self, mode: str = "supervised"):
        if mode not in MODES:
            raise ValueError(f"DLT mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.name = VARIANTS[mode]
        self.description = DESCRIPTIONS[mode]
        self.plan_section = VARIANTS["supervised"]

    # ------------------------------------------------------------------------------- planning
    def plan(self, context) -> dict:
        return planning.plan(context)

    def memory(self, section: dict, device: str):
        return memory.training_step_memory(section["template_patch_size_zyx"], section["search_patch_size_zyx"],
                                           section["batch_size"], device=device, **section["network"])

    def summary(self, section: dict, data_configuration: dict | None) -> str:
        net = section["network"]
        return (f"dlt: patch {section['search_patch_size_zyx']}, scales x{net['stem_stride']}/x{2 * net['stem_stride']}"
                f"/x{4 * net['stem_stride']}, growth {net['growth_rate']}, fpn {net['fpn_width']}, batch "
                f"{section['batch_size']}")

    # ------------------------------------------------------------------------------- training
    def build(self, section: dict) -> BuiltModel:
        network = build_dlt(section["network"])

        def criterion(outputs: dict, batch: dict) -> dict:
            return dlt_loss(outputs, batch["target_center_zyx"], batch["target_radius_mm"], batch["spacing_zyx"],
                            network.output_stride)

        return BuiltModel(network, criterion, network.predict_center, INPUT_KEYS)

    def training_defaults(self, section: dict) -> dict:
        options = {**DEFAULT_OPTIONS, "mode": self.mode, "pair": PairAugmentation().to_dict()}
        return {"batch_size": int(section.get("batch_size", 2)), "augmentation": options}

    def batches(self, data, item_ids, section: dict, config, first_batch: int):
        options = training_options(config, self.mode)
        template, search = section["template_patch_size_zyx"], section["search_patch_size_zyx"]
        pairs = data.pairs_by_id(item_ids)
        supervised = CenterShiftSampler(data.cached_case, template, search, options["search_offset_fraction"],
                                        center_shift_fraction=options["center_shift_fraction"],
                                        prior_follows_shift=bool(options["prior_follows_shift"]))
        self_supervised, lesions = None, None
        if options["mode"] != "supervised":
            self_supervised = SelfSupervisedSampler(data.cached_case, template, search,
                                                    options["search_offset_fraction"], options["center_shift_fraction"])
            lesions = scan_lesions(pairs)
        maker = DLTBatchMaker(options["mode"], supervised, self_supervised, lesions, options["pair"],
                              options["ssl_probability"], options["anatomy_dropout"])
        items = lesions if options["mode"] == "ssl" else pairs
        loader = SeededBatchLoader(items, maker, config.batch_size, config.seed, first_batch, config.num_workers)
        return make_batch_stream(loader, config.num_workers)


    # ------------------------------------------------------------------------------- prediction
    def predictor(self, request) -> PatchCaseTracker:
        return PatchCaseTracker(track_lesion, request.models, request.device, request.step_size,
                                request.search_region_zyx, request.heatmap_folder)


DLT = DLTMethod("supervised")
DLT_SSL = DLTMethod("ssl")
DLT_MIX = DLTMethod("mix")

__all__ = ["DLTMethod", "DLT", "DLT_SSL", "DLT_MIX", "VARIANTS", "PRESETS", "INPUT_KEYS", "DEFAULT_OPTIONS",
           "training_options"]
