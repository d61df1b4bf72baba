"""
Running a model outside a data loader: instances as one batch of inputs on the model's device, and
the model's inference switches set for a while and put back. Timing, every-head runs, the predictor
and the benchmarks use these rather than each their own.
"""

from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional, Sequence

from allennlp.data import Batch, Instance
from allennlp.nn import util

from early_exit.models.early_exit_classifier import EarlyExitClassifier
from early_exit.modules.exit_policies import ExitPolicy


def batch_on_device(model: EarlyExitClassifier, instances: Sequence[Instance]) -> Dict[str, Any]:
    """
    `instances` indexed with the model's vocabulary and padded into one batch, as a data loader
    makes it, on the device of the model's parameters: every field's tensors (`tokens`, and
    `label` where the instances have one).
    """
    batch = Batch(list(instances))
    batch.index_instances(model.vocab)
    device = util.get_device_of(next(model.parameters()))
    return util.move_to_device(batch.as_tensor_dict(), device)


@contextmanager
def inference_switches(
    model: EarlyExitClassifier,
    exit_policy: Optional[ExitPolicy] = None,
    run_all_heads: Optional[bool] = None,
    packed: Optional[bool] = None,
) -> Iterator[EarlyExitClassifier]:
    """
    Within the `with` block, `model` is in evaluation mode with the switches given (those left
    `None` as they were). On leaving it, also by an exception, the mode, the exit policy,
    `run_all_heads` and `packed` are as they were before, and the metrics are reset, so that the
    block's runs do not count in a later `get_metrics`.
    """
    saved = (model.training, model.exit_policy, model.run_all_heads, model.packed)
    model.eval()
    if exit_policy is not None:
        model.exit_policy = exit_policy
    if run_all_heads is not None:
        model.run_all_heads = run_all_heads
    if packed is not None:
        model.packed = packed
    try:
        yield model
    finally:
        training, model.exit_policy, model.run_all_heads, model.packed = saved
        model.train(training)
        model.get_metrics(reset=True)
