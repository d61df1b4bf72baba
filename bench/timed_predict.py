"""
Runs `allennlp predict` (the real command, in this process) and writes to a JSON file how long its
prediction loop took: reading the input lines, making instances, batching, the model, writing the
output lines. The start-up (imports, loading the archive, building the predictor) is left out, so
that `bench/performance.py` need not subtract a separately measured, noisy start-up. It also writes
how much of the loop the model's forward passes took (`model_seconds`), so that the end-to-end
speedup can be set against the model-time speedup of the very same batches in the same run.

Usage: python bench/timed_predict.py TIMING.json ARGS...  (ARGS as for `allennlp predict`)
"""

import json
import sys
import time
from pathlib import Path


def main() -> None:
    timing_file = Path(sys.argv[1])
    started = time.perf_counter()

    from allennlp.commands import main as allennlp_main
    from allennlp.commands.predict import _PredictManager

    from early_exit.models import EarlyExitClassifier

    run = _PredictManager.run
    forward = EarlyExitClassifier.forward
    model_seconds = [0.0]

    def timed_forward(model: EarlyExitClassifier, *args, **kwargs):
        start = time.perf_counter()
        output = forward(model, *args, **kwargs)
        model_seconds[0] += time.perf_counter() - start
        return output

    def timed_run(manager: _PredictManager) -> None:
        model_seconds[0] = 0.0
        start = time.perf_counter()
        run(manager)
        loop = time.perf_counter() - start
        timing_file.write_text(
            json.dumps(
                {
                    "loop_seconds": loop,
                    "model_seconds": model_seconds[0],
                    "startup_seconds": start - started,
                }
            )
        )

    _PredictManager.run = timed_run  # type: ignore[method-assign]
    EarlyExitClassifier.forward = timed_forward  # type: ignore[method-assign]
    sys.argv = ["allennlp", "predict"] + sys.argv[2:]
    allennlp_main(prog="allennlp")


if __name__ == "__main__":
    main()
