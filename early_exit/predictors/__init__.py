from early_exit.predictors.early_exit_classifier import (
    EarlyExitClassifierPredictor,
    PredictorInputError,
    length_sorted_groups,
)

__all__ = ["EarlyExitClassifierPredictor", "PredictorInputError", "length_sorted_groups"]
