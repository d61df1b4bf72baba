"""
Runs `allennlp predict` (the real command, in this process) and writes to a JSON file how long its
prediction loop took: reading the input lines, making instances, batching, the model, writing the
output lines. The start-up (imports, loading the archive, building the predictor) is left out, so
that `bench/performance.py` need not subtract a separately measured, noisy start-up.

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

    run = _PredictManager.run

    def timed_run(manager: _PredictManager) -> None:
        start = time.perf_counter()
        run(manager)
        loop = time.perf_counter() - start
        timing_file.write_text(
            json.dumps({"loop_seconds": loop, "startup_seconds": start - started})
        )

    _PredictManager.run = timed_run  # type: ignore[method-assign]
    sys.argv = ["allennlp", "predict"] + sys.argv[2:]
    allennlp_main(prog="allennlp")


if __name__ == "__main__":
    main()
