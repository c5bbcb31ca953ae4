"""lesionnet.networks: shared 3D building blocks (residual encoder, cross-attention, MLP, positional
encoding) and the weighted normalised cross-correlation. Each method's network is assembled from these
in ``lesionnet/methods/<method>/network.py``."""
from lesionnet.networks.blocks import (
                                       MLP,
                                       BasicResBlock3d,
                                       ConvNormAct,
                                       CrossAttentionLayer,
                                       ResNetEncoder3d,
                                       get_norm,
                                       sine_positional_encoding_3d,
)
from lesionnet.networks.matching import weighted_ncc

__all__ = [
    "MLP", "BasicResBlock3d", "ConvNormAct", "CrossAttentionLayer", "ResNetEncoder3d", "get_norm",
    "sine_positional_encoding_3d", "weighted_ncc",
]
