"""Nested plain-data dicts (plans, presets): merging overrides into a copy."""
from __future__ import annotations

import copy


def deep_merge(base: dict, overrides: dict) -> dict:
    """A copy of ``base`` with ``overrides`` applied: nested dicts are merged key by key, any other value
    (lists included) replaces the base's. Neither argument is modified."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


__all__ = ["deep_merge"]
