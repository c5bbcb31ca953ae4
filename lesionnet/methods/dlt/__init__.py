"""DLT (Deep Lesion Tracker, CVPR 2021): 3D DenseFPN + anatomy signal encoder + fast cross-correlation, trained
supervised (``dlt``), self-supervised (``dlt_ssl``) or mixed (``dlt_mix``); see documentation/methods/dlt.md."""
