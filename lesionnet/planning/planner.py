"""The planner's assembly: fingerprint + memory budget + the methods in → one plans dict out (pure).

:func:`plan_from_fingerprint` asks every method it is given for its own section of the plan
(``method.plan(context)``), with a :class:`PlanningContext` that holds what all of them read: the
fingerprint, the memory budget, the CT normalisation and the tracking task's geometry (target
spacing, template and search patches around the registration prior). It knows no method by name:
the caller passes the methods (``lesionnet_plan_and_preprocess`` passes every registered one).

A method's section may carry a ``data_configuration`` (how the scans must be preprocessed for it);
sections that need the same preprocessing name the same ``data_identifier`` and share one entry of
``plans["data_configurations"]``. Methods of another task, or that plan nothing, are listed in
``plans["not_planned"]`` with the reason.

Axis order of every size and spacing is ``(z, y, x)``; radii and errors are mm.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Protocol

import numpy as np

from lesionnet.planning.memory import usable_memory_bytes
from lesionnet.planning.resolution import CPU_PATCH_VOXEL_BUDGET, rule_tracking_resolution
from lesionnet.planning.rules import (
    decision,
    median_resampled_shape,
    rule_ct_normalization,
    rule_registration_prior,
    rule_search_patch,
    rule_target_spacing,
    rule_template_patch,
)

PLANS_VERSION = 4
#: data configuration of full 3D resampling to the target spacing
DATA_3D = "lesionnetPlans_3d"
#: data configuration that keeps each scan's slices (z native) and resamples in-plane only
DATA_NATIVE_Z = "lesionnetPlans_2.5d_nativez"


class PlanningMethod(Protocol):
    """What the planner needs of a method: its ``name``, its ``task`` and ``plan(context)``, which
    returns its section of the plan (a dict; ``None`` when the method has nothing to plan)."""

    name: str
    task: str

    def plan(self, context: "PlanningContext") -> dict | None: ...


@dataclass(frozen=True)
class PlanningContext:
    """What every method's plan reads (see the module docstring).

    Attributes:
        fingerprint: as written by :func:`lesionnet.planning.fingerprint.extract_fingerprint`.
        budget: decision record whose value is the memory budget in bytes and whose inputs hold
            ``device`` (``"cuda"`` or ``"cpu"``), see :func:`lesionnet.planning.plans_io.detect_memory_budget`.
        token_budget: most attention tokens a method may keep for the largest lesions.
        search_coverage_target: fraction of training pairs whose target a search patch must contain.
    """

    fingerprint: dict
    budget: dict
    token_budget: int = 1024
    search_coverage_target: float = 0.99

    @property
    def task(self) -> str:
        return self.fingerprint["task"]

    @property
    def device(self) -> str:
        return self.budget["inputs"].get("device", "cuda")

    @property
    def usable_bytes(self) -> int:
        """The budget minus the device's fixed reserve (what a training step may use)."""
        return usable_memory_bytes(self.budget["value"], self.device)

    @property
    def spacings_zyx(self) -> list:
        """Every training scan's spacing (mm)."""
        return self.fingerprint["spacing_zyx"]["all"]

    @property
    def scan_shapes_zyx(self) -> list:
        return [s["shape_zyx"] for s in self.fingerprint["scans"].values()]

    @property
    def scan_spacings_zyx(self) -> list:
        return [s["spacing_zyx"] for s in self.fingerprint["scans"].values()]

    @property
    def radii_mm(self) -> list:
        """Radii (mm) of the dataset's lesions (unique lesions of the pairs, or mask instances)."""
        return self.fingerprint.get("lesions", {}).get("radii_mm", [])

    @property
    def training_pairs(self) -> list:
        """Tracking: the measured training pairs of the fingerprint (prior error and radii per pair)."""
        return self.fingerprint.get("tracking", {}).get("pairs", [])

    @cached_property
    def registration_prior(self) -> dict:
        """Decision record of the registration prior (``affine`` | ``deformable``) of the tracking data."""
        return rule_registration_prior(self.fingerprint.get("tracking", {}).get("prior_candidates", {}))

    @property
    def prior_errors_mm_zyx(self) -> list:
        """Per measured training pair, the planned prior's error ``|T(source) − target|`` (mm, z, y, x)."""
        kind = self.registration_prior["value"]
        return [p["abs_error_mm_zyx"][kind] for p in self.training_pairs]

    @property
    def target_radii_mm(self) -> list:
        return [p["target_radius_mm"] for p in self.training_pairs]

    @cached_property
    def normalization(self) -> dict:
        """Decision record of the CT normalisation (the same for every method)."""
        return rule_ct_normalization(self.fingerprint.get("intensity", {}))

    def data_configuration(self, target_spacing_zyx, native_z: bool = False) -> tuple[str, dict]:
        """``(data_identifier, data configuration)`` for preprocessing at ``target_spacing_zyx`` (``None``
        on an axis keeps it; ``native_z`` keeps each scan's slices). Tracking data also record the
        registration prior of the training priors (kind and settings, :meth:`registration_prior`)."""
        config = {"normalization": self.normalization["value"], "image_interpolation": "linear",
                  "label_interpolation": "nearest", "storage": "blosc2",
                  "target_spacing_zyx": list(target_spacing_zyx), "native_z": bool(native_z)}
        if self.task == "tracking":
            tracking = self.fingerprint.get("tracking", {})
            kind = self.registration_prior["value"]
            candidate = tracking.get("prior_candidates", {}).get(kind, {})
            config["registration"] = {"prior": kind, "settings": candidate.get("prior_settings", {}),
                                      "symmetric": bool(tracking.get("registration_symmetric", True))}
        return (DATA_NATIVE_Z if native_z else DATA_3D), config

    def _patches(self, spacing_zyx, stride: int) -> tuple[dict, dict, list]:
        """Template and search patch decisions at ``spacing_zyx`` (multiples of ``stride``) and the median
        image shape there."""
        median_shape = median_resampled_shape(self.scan_shapes_zyx, self.scan_spacings_zyx, spacing_zyx)
        template_rec = rule_template_patch(self.radii_mm, spacing_zyx, stride=stride, min_size=2 * stride,
                                           max_size_zyx=median_shape)
        search_rec = rule_search_patch(self.prior_errors_mm_zyx, self.target_radii_mm, spacing_zyx,
                                       template_rec["value"], coverage=self.search_coverage_target,
                                       margin_voxels=stride, stride=stride, max_size_zyx=median_shape)
        return template_rec, search_rec, median_shape

    @cached_property
    def tracking_geometry(self) -> dict:
        """The tracking task's shared decisions: ``resolution`` (target spacing and feature stride chosen
        together, :func:`~lesionnet.planning.resolution.rule_tracking_resolution`), ``target_spacing``,
        ``template_patch_size`` and ``search_patch_size`` (decision records), ``stride`` and
        ``median_shape_zyx`` at the target spacing."""
        native_rec = rule_target_spacing(self.spacings_zyx)

        def patch_voxels(spacing_zyx, stride):
            template_rec, search_rec, _ = self._patches(spacing_zyx, stride)
            return int(np.prod(template_rec["value"]) + np.prod(search_rec["value"]))

        budget = None if self.device == "cuda" else CPU_PATCH_VOXEL_BUDGET
        resolution_rec = rule_tracking_resolution(self.radii_mm, native_rec["value"], patch_voxels, budget)
        spacing, stride = resolution_rec["value"]["spacing_zyx"], resolution_rec["value"]["stride"]
        spacing_rec = decision(spacing, "the tracking resolution's spacing (see decisions.resolution); the "
                               "native target spacing was " + native_rec["rule"], native=native_rec)
        template_rec, search_rec, median_shape = self._patches(spacing, stride)
        return {"resolution": resolution_rec, "target_spacing": spacing_rec, "template_patch_size": template_rec,
                "search_patch_size": search_rec, "stride": stride, "median_shape_zyx": median_shape}


def plan_from_fingerprint(fingerprint: dict, budget: dict, methods: Iterable[PlanningMethod], token_budget: int = 1024,
                          search_coverage_target: float = 0.99) -> dict:
    """The plans dict for a fingerprint, a memory budget and ``methods`` (pure; see the module docstring).

    Raises ``ValueError`` when two methods ask for different preprocessing under one data identifier.
    """
    context = PlanningContext(fingerprint, budget, token_budget, search_coverage_target)
    plans = {
        "plans_version": PLANS_VERSION,
        "dataset": fingerprint["dataset"],
        "task": fingerprint["task"],
        "fingerprint_signature": fingerprint.get("inputs_signature"),
        "memory_budget": budget,
        "usable_memory_bytes": context.usable_bytes,
        "normalization": context.normalization,
        **({"registration_prior": context.registration_prior} if context.task == "tracking" else {}),
        "data_configurations": {},
        "configurations": {},
        "not_planned": {},
    }
    owners: dict = {}
    for method in methods:
        if method.task != context.task:
            plans["not_planned"][method.name] = (f"'{method.name}' is a {method.task} method; "
                                                 f"{fingerprint['dataset']} is a {context.task} dataset.")
            continue
        shared = getattr(method, "plan_section", None)
        if shared and shared != method.name:
            plans["not_planned"][method.name] = f"'{method.name}' trains and predicts from the '{shared}' section."
            continue
        section = method.plan(context)
        if section is None:
            plans["not_planned"][method.name] = f"'{method.name}' needs no plan (it runs on the raw scans)."
            continue
        section = dict(section)
        data_id, data_config = section.get("data_identifier"), section.pop("data_configuration", None)
        if data_id:
            existing = plans["data_configurations"].setdefault(data_id, data_config)
            if existing != data_config:
                raise ValueError(f"methods '{owners[data_id]}' and '{method.name}' plan different preprocessing "
                                 f"under the data identifier '{data_id}'.")
            owners.setdefault(data_id, method.name)
        plans["configurations"][method.name] = {"method": method.name, **section}
    return plans


__all__ = ["PLANS_VERSION", "DATA_3D", "DATA_NATIVE_Z", "PlanningContext", "PlanningMethod", "plan_from_fingerprint"]
