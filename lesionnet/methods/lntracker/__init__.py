"""LN-Tracker (CVPR 2025), 3D detection by tracking along z: plan section (native-z preprocessing),
network, losses, training samples, Algorithm 1, the merging baseline and the predictor; see
documentation/methods/ln_tracker.md."""
