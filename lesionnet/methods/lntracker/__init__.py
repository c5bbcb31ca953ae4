"""LN-Tracker (CVPR 2025), detection by tracking along z: planned only so far — its plan section, the
native-z preprocessing of detection datasets, and a memory estimate. The network, training and
prediction arrive with the LN-Tracker issue; see documentation/methods/."""
