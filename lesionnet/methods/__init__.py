"""The methods and their registry.

:data:`REGISTRY` is a plain dict ``name -> method object`` (the interface is described in
:mod:`lesionnet.methods.base`). The generic layers and the command-line tools loop over it or look a
name up with :func:`get_method`; registering a method of one's own is one line::

    from lesionnet.methods import REGISTRY
    REGISTRY["mytracker"] = MyTracker()

Built in: ``identity``, ``affine`` and ``deformable`` (registration baselines), ``matcher`` (the parameter-free
NCC + prior matcher, a baseline), ``tlt`` (Transformer Lesion Tracker),
``dlt`` (Deep Lesion Tracker) with its training modes ``dlt_ssl`` and ``dlt_mix``, ``lntracker`` (LN-Tracker,
detection).
"""
from __future__ import annotations

from lesionnet.methods.affine.method import AFFINE, DEFORMABLE, IDENTITY
from lesionnet.methods.base import Method, check_method
from lesionnet.methods.dlt.method import DLT, DLT_MIX, DLT_SSL
from lesionnet.methods.lntracker.method import LNTRACKER
from lesionnet.methods.matcher.method import MATCHER
from lesionnet.methods.tlt.method import TLT

REGISTRY: dict = {method.name: method for method in (IDENTITY, AFFINE, DEFORMABLE, MATCHER, TLT, DLT, DLT_SSL, DLT_MIX,
                                                        LNTRACKER)}

#: capabilities a caller may require of a method (see :func:`get_method`)
CAPABILITIES = {"train": "trainable", "predict": "predicts"}


def methods_with(task: str | None = None, capability: str | None = None) -> list:
    """The registered methods (in registry order) of ``task`` that have ``capability`` (``"train"`` or
    ``"predict"``); None means any."""
    out = []
    for method in REGISTRY.values():
        check_method(method)
        if task is not None and method.task != task:
            continue
        if capability is not None and not getattr(method, CAPABILITIES[capability]):
            continue
        out.append(method)
    return out


def get_method(name: str, task: str | None = None, capability: str | None = None):
    """The registered method ``name``; ``ValueError`` saying what is available when it is not registered,
    is not of ``task``, or lacks ``capability`` (``"train"``, ``"predict"``)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method '{name}'; registered: {', '.join(REGISTRY)}.")
    method = REGISTRY[name]
    check_method(method)
    if task is not None and method.task != task:
        fitting = ", ".join(m.name for m in methods_with(task, capability)) or "none"
        raise ValueError(f"'{name}' is a {method.task} method; this needs a {task} method ({fitting}).")
    if capability is not None and not getattr(method, CAPABILITIES[capability]):
        able = ", ".join(m.name for m in methods_with(task, capability)) or "none"
        verb = {"train": "be trained", "predict": "predict"}[capability]
        raise ValueError(f"'{name}' cannot {verb} ({method.description}); methods that can: {able}.")
    return method


def describe_methods(task: str | None = None, capability: str | None = None) -> str:
    """``name: description`` lines of :func:`methods_with`, for ``-h``."""
    return "; ".join(f"{m.name} ({m.task}): {m.description}" for m in methods_with(task, capability))


__all__ = ["REGISTRY", "CAPABILITIES", "Method", "check_method", "methods_with", "get_method", "describe_methods"]
