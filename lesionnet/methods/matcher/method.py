"""The ``matcher`` method: the parameter-free NCC + prior matcher as a named baseline.

It plans like TLT (the tracking resolution, patches and preprocessing of the tracking task, the NCC kernel
from the median lesion radius), predicts through TLT's case tracker with
:class:`~lesionnet.methods.matcher.network.NCCPriorMatcher` as its network, and trains nothing: whatever a
trained tracker adds beyond it comes from training.
"""
from __future__ import annotations

from lesionnet.inference.model_discovery import LoadedFold
from lesionnet.methods.base import Method
from lesionnet.methods.matcher.network import MatcherConfig, NCCPriorMatcher
from lesionnet.methods.tlt.planning import rule_fine_matching
from lesionnet.methods.tlt.predictor import TLTCaseTracker
from lesionnet.training.built_model import BuiltModel


class MatcherMethod(Method):
    name = "matcher"
    task = "tracking"
    description = "parameter-free matcher: weighted NCC of the template lesion + the registration prior"
    predicts = True
    makes_heatmaps = True
    #: its predictor needs its plan section (resolution, patches, kernel) though nothing is trained
    uses_plan = True

    def plan(self, context) -> dict:
        geometry = context.tracking_geometry
        spacing = geometry["target_spacing"]["value"]
        template = geometry["template_patch_size"]["value"]
        kernel_rec = rule_fine_matching(context.radii_mm, spacing, template, geometry["stride"])
        data_id, data_config = context.data_configuration(spacing)
        return {"data_identifier": data_id, "data_configuration": data_config,
                "template_patch_size_zyx": template, "search_patch_size_zyx": geometry["search_patch_size"]["value"],
                "matcher": MatcherConfig(kernel_zyx=kernel_rec["value"]["kernel_zyx"]).to_dict(),
                "decisions": {"kernel": kernel_rec}}

    def summary(self, section: dict, data_configuration: dict | None) -> str:
        return (f"matcher: template {section['template_patch_size_zyx']}, search {section['search_patch_size_zyx']}, "
                f"NCC kernel {section['matcher']['kernel_zyx']}")

    def predictor(self, request) -> TLTCaseTracker:
        if request.plan is None:
            raise ValueError("the matcher needs its plan section: run lesionnet_plan_and_preprocess on the dataset.")
        network = NCCPriorMatcher(MatcherConfig.from_dict(request.plan["configuration"]["matcher"]))
        model = BuiltModel(network, None, network.predict_center, ("template", "template_gaussian", "search",
                                                                    "search_prior"))
        fold = LoadedFold("-", model, request.plan)
        return TLTCaseTracker([fold], request.device, request.step_size, request.search_region_zyx,
                              request.heatmap_folder)


MATCHER = MatcherMethod()

__all__ = ["MatcherMethod", "MATCHER"]
