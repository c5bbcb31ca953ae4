"""DLT (Deep Lesion Tracker, CVPR 2021): planned only so far — its plan section and memory estimate. The
network, training and prediction arrive with the DLT issue; see documentation/methods/."""
