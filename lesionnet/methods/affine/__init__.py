"""The registration baselines: ``affine`` (the affine prior itself as the prediction) and ``identity`` (the
unmoved source center). Neither is trained; both register or map on the raw scans."""
