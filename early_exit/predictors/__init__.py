from early_exit.predictors.early_exit_classifier import (
    EarlyExitClassifierPredictor,
    PredictorInputError,
)

__all__ = ["EarlyExitClassifierPredictor", "PredictorInputError"]
