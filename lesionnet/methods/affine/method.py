"""The ``affine``, ``deformable`` and ``identity`` methods: registration baselines every tracker is reported beside.

``affine`` plans a section that records the registration prior planned for the dataset (its kind and
settings) and the priors' errors measured by the fingerprint; ``deformable`` and ``identity`` plan
nothing. Their predictors are :class:`lesionnet.methods.affine.tracker.RegistrationTracker`; a
request's ``registration`` settings replace the default ones when they are of the method's kind.
"""
from __future__ import annotations

from lesionnet.methods.affine.tracker import RegistrationTracker
from lesionnet.methods.base import Method
from lesionnet.registration.priors import default_settings


class RegistrationMethod(Method):
    """A registration baseline: predicts with the registration prior named like the method (no training)."""

    task = "tracking"
    predicts = True

    def predictor(self, request) -> RegistrationTracker:
        settings = request.registration  # replaced by the defaults unless they belong to this kind of prior
        return RegistrationTracker(settings if settings is not None and settings.kind == self.name
                                   else default_settings(self.name))


class AffineMethod(RegistrationMethod):
    name = "affine"
    description = "affine registration baseline: the source center mapped through T_aff (no training)"

    def plan(self, context) -> dict:
        tracking = context.fingerprint.get("tracking", {})
        return {
            "data_identifier": None,
            "uses_raw_data": True,
            "prior_candidates": tracking.get("prior_candidates", {}),
            "prior_error_registration": tracking.get("prior_error_registration", {}),
            "decisions": {"registration_prior": context.registration_prior},
        }

    def summary(self, section: dict, data_configuration: dict | None) -> str:
        return "affine: registration on the raw scans (no preprocessing)"


class DeformableMethod(RegistrationMethod):
    name = "deformable"
    description = "deformable registration baseline: the source center through affine + B-spline"


class IdentityMethod(Method):
    name = "identity"
    task = "tracking"
    description = "the unmoved source center read in the target scan (the floor every tracker must beat)"
    predicts = True

    def predictor(self, request) -> RegistrationTracker:
        return RegistrationTracker(None)


AFFINE = AffineMethod()
DEFORMABLE = DeformableMethod()
IDENTITY = IdentityMethod()

__all__ = ["RegistrationMethod", "AffineMethod", "DeformableMethod", "IdentityMethod", "AFFINE", "DEFORMABLE",
           "IDENTITY"]
