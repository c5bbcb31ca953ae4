"""The ``affine`` and ``identity`` methods: registration baselines every tracker is reported beside.

``affine`` plans a section that records the registration settings of the dataset's priors and the
prior's error measured by the fingerprint; ``identity`` plans nothing. Their predictors are
:class:`lesionnet.methods.affine.tracker.RegistrationTracker`.
"""
from __future__ import annotations

from lesionnet.methods.affine.tracker import RegistrationTracker
from lesionnet.methods.base import Method
from lesionnet.planning.rules import decision


class AffineMethod(Method):
    name = "affine"
    task = "tracking"
    description = "affine registration baseline: the source center mapped through T_aff (no training)"
    predicts = True

    def plan(self, context) -> dict:
        tracking = context.fingerprint.get("tracking", {})
        registration = tracking.get("registration", {})
        return {
            "data_identifier": None,
            "uses_raw_data": True,
            "registration": registration,
            "prior_error_mm": tracking.get("prior_error_mm", {}),
            "prior_error_registration": tracking.get("prior_error_registration", {}),
            "decisions": {"registration": decision(registration, "affine registration as planned for the priors "
                                                   "(lesionnet.registration.affine defaults, single-threaded)")},
        }

    def summary(self, section: dict, data_configuration: dict | None) -> str:
        return "affine: registration on the raw scans (no preprocessing)"

    def predictor(self, request) -> RegistrationTracker:
        return RegistrationTracker(register=True, settings=request.registration)


class IdentityMethod(Method):
    name = "identity"
    task = "tracking"
    description = "the unmoved source center read in the target scan (the floor every tracker must beat)"
    predicts = True

    def predictor(self, request) -> RegistrationTracker:
        return RegistrationTracker(register=False)


AFFINE = AffineMethod()
IDENTITY = IdentityMethod()

__all__ = ["AffineMethod", "IdentityMethod", "AFFINE", "IDENTITY"]
