"""lesionnet.evaluation: tracking metrics with the DLS benchmark conventions, and prediction I/O."""
from lesionnet.evaluation.prediction_io import (
                                                PREDICTIONS_FORMAT,
                                                PREDICTIONS_VERSION,
                                                PredictionFormatError,
                                                TrackingPredictions,
                                                detect_form,
                                                load_tracking_predictions,
                                                make_prediction_record,
                                                prediction_record_from_pair,
                                                read_predictions,
                                                write_predictions,
)
from lesionnet.evaluation.tracking_metrics import (
                                                PairedComparison,
                                                TrackingEvaluation,
                                                compare_predictions,
                                                evaluate_predictions,
                                                evaluate_tracking,
                                                evaluate_tracking_file,
)

__all__ = [
    "PREDICTIONS_FORMAT", "PREDICTIONS_VERSION", "PredictionFormatError", "TrackingPredictions", "detect_form",
    "load_tracking_predictions", "make_prediction_record", "prediction_record_from_pair", "read_predictions",
    "write_predictions", "PairedComparison", "TrackingEvaluation", "compare_predictions", "evaluate_predictions",
    "evaluate_tracking", "evaluate_tracking_file",
]
