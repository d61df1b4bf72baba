"""
A trainer callback for the tests only: it sends its own process a signal at one training batch, to
interrupt `allennlp train` mid-epoch as a user (SIGINT) or the system (SIGKILL) would. It does so
once per serialization directory (a marker file remembers), so that `--recover` runs through.
Load it with `--include-package tests.training.callbacks.interrupting_callback`.
"""

import os
import signal

from allennlp.training.callbacks.callback import TrainerCallback
from overrides import overrides

MARKER_NAME = "interrupted_by_test"


@TrainerCallback.register("early_exit_test_interrupt_once")
class InterruptOnceCallback(TrainerCallback):
    """
    # Parameters

    serialization_dir : `str`
        Passed by the trainer.
    signal_name : `str`, optional (default = `"SIGINT"`)
    epoch : `int`, optional (default = `1`)
        0-based epoch of the batch to interrupt after.
    batch : `int`, optional (default = `2`)
        How many training batches of that epoch have run when the signal is sent.
    """

    def __init__(
        self, serialization_dir: str, signal_name: str = "SIGINT", epoch: int = 1, batch: int = 2
    ) -> None:
        super().__init__(serialization_dir)
        self.signal = getattr(signal, signal_name)
        self.epoch = epoch
        self.batch = batch

    @overrides
    def on_batch(
        self,
        trainer,
        batch_inputs,
        batch_outputs,
        batch_metrics,
        epoch,
        batch_number,
        is_training,
        is_primary=True,
        batch_grad_norm=None,
        **kwargs,
    ) -> None:
        if not is_training or (epoch, batch_number) != (self.epoch, self.batch):
            return
        marker = os.path.join(self.serialization_dir, MARKER_NAME)
        if os.path.exists(marker):
            return
        with open(marker, "w"):
            pass
        if self.signal == signal.SIGINT:
            # What Python's SIGINT handler does, but here and now: a signal sent with `os.kill` is
            # handled at a later bytecode, and if that falls inside a finalizer (garbage collection
            # under load) the KeyboardInterrupt is printed as "ignored" and training goes on.
            raise KeyboardInterrupt
        os.kill(os.getpid(), self.signal)
