"""lesionnet.evaluation: tracking metrics with the DLS benchmark conventions, and reading predictions back.

The predictions file itself (what trackers write) is defined in :mod:`lesionnet.datasets.prediction_format`.
"""
from lesionnet.evaluation.prediction_forms import detect_form
from lesionnet.evaluation.prediction_io import TrackingPredictions, load_tracking_predictions
from lesionnet.evaluation.tracking_metrics import (
                                                PairedComparison,
                                                TrackingEvaluation,
                                                compare_predictions,
                                                evaluate_predictions,
                                                evaluate_tracking,
                                                evaluate_tracking_file,
)

__all__ = [
    "TrackingPredictions", "detect_form", "load_tracking_predictions", "PairedComparison", "TrackingEvaluation",
    "compare_predictions", "evaluate_predictions", "evaluate_tracking", "evaluate_tracking_file",
]
