"""
`allennlp predict` with rows carried across batches.

allennlp's prediction loop (`allennlp.commands.predict._PredictManager`) hands the predictor one
batch at a time and writes its outputs before it reads the next, so the rows of a batch that go on
past a head cannot wait for the next batch's. Importing this package (`--include-package
early_exit`) replaces that loop by `EarlyExitPredictManager`, which does the same for every
predictor but streams the input through `EarlyExitClassifierPredictor.predict_json_stream` (or
`predict_instance_stream` with `--use-dataset-reader`) when the predictor is an
`early_exit_classifier` one with `carry_rows` on and the batch size is above 1. Output lines, their
order and what is printed stay the same.
"""

import json

from allennlp.commands import predict as allennlp_predict
from overrides import overrides

from early_exit.predictors.early_exit_classifier import EarlyExitClassifierPredictor


class EarlyExitPredictManager(allennlp_predict._PredictManager):
    """allennlp's `_PredictManager`, streaming batches through an early-exit predictor."""

    @overrides
    def run(self) -> None:
        predictor = self._predictor
        if not (
            isinstance(predictor, EarlyExitClassifierPredictor)
            and predictor.carry_rows
            and self._batch_size > 1
        ):
            super().run()
            return
        try:
            if self._dataset_reader is not None:
                pairs = predictor.predict_instance_stream(
                    self._get_instance_data(), self._batch_size
                )
                describe = str
            else:
                pairs = predictor.predict_json_stream(self._get_json_data(), self._batch_size)
                describe = json.dumps
            for index, (model_input, output) in enumerate(pairs):
                self._maybe_print_to_console_and_file(
                    index, predictor.dump_line(output), describe(model_input)
                )
        finally:
            if self._output_file is not None:
                self._output_file.close()


def install_carried_predict() -> None:
    """Makes `allennlp predict` use `EarlyExitPredictManager` (idempotent)."""
    allennlp_predict._PredictManager = EarlyExitPredictManager
