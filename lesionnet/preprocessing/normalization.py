"""CT intensity normalisation schemes (HU in, float32 out).

* ``ct_zscore`` (default, nnU-Net's CT normalisation): clip to the body's 0.5 / 99.5 percentiles of
  the dataset fingerprint, subtract the body mean, divide by the body std. Dataset-adaptive: a lung
  dataset and a liver dataset get different windows.
* ``linear_hu``: ``(HU + 800) / 1600`` — a fixed linear map sending -800 HU to 0 and 800 HU to 1, no
  clipping (the normalisation of TLT's public code). Offered for reproducing that setting; lesionnet
  plans ``ct_zscore``.
"""
from __future__ import annotations

import numpy as np

SCHEMES = ("ct_zscore", "linear_hu")


def ct_zscore(image_hu: np.ndarray, clip_hu, mean_hu: float, std_hu: float) -> np.ndarray:
    """``(clip(HU, lo, hi) - mean) / std`` as float32."""
    lo, hi = float(clip_hu[0]), float(clip_hu[1])
    out = np.clip(image_hu.astype(np.float32, copy=False), lo, hi)
    out = (out - np.float32(mean_hu)) / np.float32(max(float(std_hu), 1e-6))
    return out.astype(np.float32, copy=False)


def linear_hu(image_hu: np.ndarray) -> np.ndarray:
    """``(HU + 800) / 1600`` as float32 (the fixed window of TLT's public code)."""
    return ((image_hu.astype(np.float32, copy=False) + np.float32(800.0)) / np.float32(1600.0)).astype(np.float32)


def normalize(image_hu: np.ndarray, params: dict) -> np.ndarray:
    """Apply the scheme described by a plan's ``normalization`` dict (``{"scheme": ..., ...}``)."""
    scheme = params.get("scheme", "ct_zscore")
    if scheme == "ct_zscore":
        return ct_zscore(image_hu, params["clip_hu"], params["mean_hu"], params["std_hu"])
    if scheme == "linear_hu":
        return linear_hu(image_hu)
    raise ValueError(f"unknown normalization scheme {scheme!r}; choose one of {SCHEMES}")


__all__ = ["SCHEMES", "ct_zscore", "linear_hu", "normalize"]
