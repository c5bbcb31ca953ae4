"""TLT (Transformer Lesion Tracker, MICCAI 2022): network, loss, planning rules, memory model, tracker,
predictor and the registered method object (:mod:`.method`); see documentation/methods/tlt.md."""
