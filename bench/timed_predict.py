"""
Runs `allennlp predict` (the real command, in this process) and writes to a JSON file how long its
prediction loop took: reading the input lines, making instances, batching, the model, writing the
output lines (the loop as this package runs it: at batch sizes above 1 the batches are streamed
through the model's `BatchStream`). The start-up (imports, loading the archive, building the
predictor) is left out, so that the benchmark (`python -m bench.performance`) need not subtract a
separately measured, noisy start-up. It also writes how much of the loop the model took
(`model_seconds`: its forward passes, or its stream's `push` and `finish` calls), so that the
end-to-end speedup can be set against the model-time speedup of the very same batches in the same
run.

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

    from early_exit.models import EarlyExitClassifier  # installs the package's predict loop
    from early_exit.models.batch_stream import BatchStream
    from early_exit.predictors.predict_manager import EarlyExitPredictManager

    manager = EarlyExitPredictManager  # the loop `allennlp predict` runs for this package's model
    run = manager.run
    model_seconds = [0.0]
    depth = [0]  # a stream's push can call forward: time the outermost call only

    def timed(method):
        def wrapper(*args, **kwargs):
            depth[0] += 1
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    model_seconds[0] += time.perf_counter() - start

        return wrapper

    def timed_run(self) -> None:
        model_seconds[0] = 0.0
        start = time.perf_counter()
        run(self)
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

    manager.run = timed_run  # type: ignore[method-assign]
    EarlyExitClassifier.forward = timed(EarlyExitClassifier.forward)  # type: ignore
    BatchStream.push = timed(BatchStream.push)  # type: ignore[method-assign]
    BatchStream.finish = timed(BatchStream.finish)  # type: ignore[method-assign]
    sys.argv = ["allennlp", "predict"] + sys.argv[2:]
    allennlp_main(prog="allennlp")


if __name__ == "__main__":
    main()
