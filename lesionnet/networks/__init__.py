"""lesionnet.networks: 3D building blocks and the tracking/detection models.

TLT (Transformer Lesion Tracker): :func:`build_tlt`, :class:`TLT`, :class:`TLTConfig`; see
documentation/methods/tlt.md.
"""
from lesionnet.networks.blocks import (
                                       MLP,
                                       BasicResBlock3d,
                                       ConvNormAct,
                                       CrossAttentionLayer,
                                       ResNetEncoder3d,
                                       get_norm,
                                       sine_positional_encoding_3d,
)
from lesionnet.networks.tlt import (
                                       TLT,
                                       TLTConfig,
                                       TokenSelection,
                                       argmax_center_zyx,
                                       build_tlt,
                                       count_parameters,
                                       feature_voxel_centers_zyx,
                                       heatmap_to_patch,
                                       predict_center,
                                       resize_to_grid,
                                       select_template_tokens,
)

__all__ = [
    "MLP", "BasicResBlock3d", "ConvNormAct", "CrossAttentionLayer", "ResNetEncoder3d", "get_norm",
    "sine_positional_encoding_3d",
    "TLT", "TLTConfig", "TokenSelection", "argmax_center_zyx", "build_tlt", "count_parameters",
    "feature_voxel_centers_zyx", "heatmap_to_patch", "predict_center", "resize_to_grid",
    "select_template_tokens",
]
