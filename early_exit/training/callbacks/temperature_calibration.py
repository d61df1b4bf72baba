import json
import logging
import math
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import torch
import torch.distributed as dist
from allennlp.common.checks import ConfigurationError
from allennlp.data import DatasetReader, Instance
from allennlp.models.archival import CONFIG_NAME
from allennlp.nn.util import is_distributed
from allennlp.training.callbacks.callback import TrainerCallback
from overrides import overrides

from early_exit.calibration.calibrated_archive import (
    set_runner_temperatures,
    store_temperatures_in_weights,
)
from early_exit.common.files import atomic_open, atomic_path
from early_exit.calibration.calibration_report import (
    CALIBRATION_REPORT_NAME,
    format_calibration_table,
    write_calibration_report,
)
from early_exit.calibration.compute_curves import COMPUTE_CURVES_KEY, compute_curves
from early_exit.calibration.temperature_scaling import (
    DEFAULT_MAX_TEMPERATURE,
    DEFAULT_MIN_TEMPERATURE,
    TemperatureFit,
    check_temperature_range,
    fit_head_temperatures,
)
from early_exit.dataset_readers.indexed import read_indexed
from early_exit.dataset_readers.label_check import check_known_labels
from early_exit.models.early_exit_classifier import EarlyExitClassifier
from early_exit.models.head_outputs import HeadOutputs, collect_head_outputs
from early_exit.modules.exit_policies import scaled_probabilities
from early_exit.modules.layer_runners import TorchLayerRunner

if TYPE_CHECKING:
    from allennlp.training.gradient_descent_trainer import GradientDescentTrainer

logger = logging.getLogger(__name__)


@TrainerCallback.register("early_exit_temperature_calibration")
class TemperatureCalibrationCallback(TrainerCallback):
    """
    Calibrates every exit head of an `early_exit_classifier` by temperature scaling at the end of
    training, as in Schwartz et al. (2020), so that the archived model takes its exit decisions on
    calibrated probabilities with no further step.

    When training has finished, the trainer holds the best weights (the ones archived in
    `model.tar.gz`). This callback then runs every head on the calibration data with no early exit,
    fits one temperature per head (see `early_exit.calibration.fit_temperature`), writes them into
    the model and into the best-weights file that `allennlp train` archives, writes
    `calibration.json` (per head: exit layer, temperature, NLL and ECE before and after, number of
    instances) into the serialization directory and logs a table of it.

    When the model's `layer_runner` computes in another precision (int8), the heads are calibrated
    twice: with the float32 torch layers for the weights, and with the runner for its own
    temperatures, stored under `model.runner_temperatures` in the archived `config.json`.

    Under distributed training every worker runs the heads on its own shard of the data, the logits
    are gathered, and the primary worker's temperatures are broadcast so that every worker holds
    the same values; only the primary writes files. If training failed, nothing is done.

    Registered as a `TrainerCallback` with name "early_exit_temperature_calibration".

    # Parameters

    serialization_dir : `str`
        Passed by the trainer.
    calibration_data_path : `str`, optional
        Data to calibrate on, read with the validation dataset reader (the training reader when
        there is no validation data). By default, the validation data.
    batch_size : `int`, optional (default = `32`)
        Batch size for running the heads.
    min_temperature : `float`, optional (default = `0.05`)
    max_temperature : `float`, optional (default = `20.0`)
        The range the temperatures are searched in; it must hold 1.
    """

    def __init__(
        self,
        serialization_dir: str,
        calibration_data_path: Optional[str] = None,
        batch_size: int = 32,
        min_temperature: float = DEFAULT_MIN_TEMPERATURE,
        max_temperature: float = DEFAULT_MAX_TEMPERATURE,
    ) -> None:
        super().__init__(serialization_dir)
        check_temperature_range(min_temperature, max_temperature)
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, got {batch_size}")
        self.calibration_data_path = calibration_data_path
        self.batch_size = batch_size
        self.min_temperature = min_temperature
        self.max_temperature = max_temperature

    @overrides
    def on_start(
        self, trainer: "GradientDescentTrainer", is_primary: bool = True, **kwargs
    ) -> None:
        """Checks the set-up before training starts, so that a mistake does not cost a run."""
        super().on_start(trainer, is_primary=is_primary, **kwargs)
        if not isinstance(trainer.model, EarlyExitClassifier):
            raise ConfigurationError(
                "the early_exit_temperature_calibration callback needs an early_exit_classifier "
                f"model, not a {type(trainer.model).__name__}"
            )
        if self.calibration_data_path is None:
            if trainer._validation_data_loader is None:
                raise ConfigurationError(
                    "the early_exit_temperature_calibration callback calibrates on the validation "
                    "data by default, and there is none: set validation_data_path, or the "
                    "callback's calibration_data_path"
                )
            return
        if self._reader(trainer) is None:
            raise ConfigurationError(
                "the early_exit_temperature_calibration callback found no dataset reader to read "
                f"calibration_data_path {self.calibration_data_path!r} with"
            )
        path = self.calibration_data_path
        if (
            "://" not in path
            and not any(char in path for char in "*?[")
            and not os.path.exists(path)
        ):
            raise ConfigurationError(f"calibration_data_path {path!r} does not exist")
        # Read now, so that data without instances or with labels training never saw stops the
        # run before training rather than after it.
        check_known_labels(
            self._instances(trainer), trainer.model.vocab, path, self._reader(trainer)
        )

    @overrides
    def on_end(
        self,
        trainer: "GradientDescentTrainer",
        metrics: Dict[str, Any] = None,
        epoch: int = None,
        is_primary: bool = True,
        **kwargs,
    ) -> None:
        """
        Calibrates the heads of the trained model (the trainer has loaded the best weights by now)
        unless training failed (`metrics` is `None`).
        """
        if metrics is None:
            logger.warning("Training did not finish: the exit heads are not calibrated.")
            return
        try:
            self._calibrate(trainer, is_primary)
        except Exception as error:
            raise RuntimeError(
                f"temperature calibration after training failed: {error}. The best weights are "
                f"in {self._best_weights_file(trainer)}: archive them with "
                "allennlp.models.archival.archive_model and calibrate the archive with "
                "`allennlp calibrate`."
            ) from error

    def _best_weights_file(self, trainer: "GradientDescentTrainer") -> str:
        return trainer._best_model_filename or os.path.join(self.serialization_dir, "best.th")

    def _reader(self, trainer: "GradientDescentTrainer") -> Optional[DatasetReader]:
        for loader in (trainer._validation_data_loader, trainer.data_loader):
            reader = getattr(loader, "reader", None)
            if isinstance(reader, DatasetReader):
                return reader
        return None

    def _source(self, trainer: "GradientDescentTrainer") -> str:
        if self.calibration_data_path is not None:
            return self.calibration_data_path
        path = getattr(trainer._validation_data_loader, "data_path", None)
        return "validation data" if path is None else f"validation data ({path})"

    def _instances(self, trainer: "GradientDescentTrainer") -> List[Instance]:
        """This worker's share of the calibration data."""
        if self.calibration_data_path is None:
            return list(trainer._validation_data_loader.iter_instances())
        return read_indexed(self._reader(trainer), self.calibration_data_path)

    def _calibrate(self, trainer: "GradientDescentTrainer", is_primary: bool) -> None:
        model: EarlyExitClassifier = trainer.model  # type: ignore[assignment]
        source = self._source(trainer)
        instances = self._instances(trainer)
        runner = model.layer_runner
        runner_key = runner.calibration_key()
        if runner_key is not None:  # the weights' temperatures are the float32 layers' first
            model.layer_runner = TorchLayerRunner()
        try:
            fits = self._fit(model, instances, source)
        finally:
            model.layer_runner = runner
        if is_primary:
            self._save(trainer, model, fits, source)
        if runner_key is not None:
            logger.info(
                "Calibrating the exit heads again under layer runner %s.", runner.describe()
            )
            fits = self._fit(model, instances, source)
            if is_primary:
                self._save_runner_temperatures(runner_key, [fit.temperature for fit in fits])
        if is_primary:
            self._save_compute_curves(model.compute_curves)

    def _fit(
        self, model: EarlyExitClassifier, instances: List[Instance], source: str
    ) -> List[TemperatureFit]:
        """Fits the temperatures the model's layer runner serves with and sets them."""
        logger.info("Calibrating the exit heads' temperatures on %s.", source)
        head_outputs = self._collect(model, instances)
        # Every worker fits on the gathered logits, so that an error is raised on all of them
        # rather than leaving the others waiting in the broadcast; the primary's values are used.
        fits = fit_head_temperatures(
            head_outputs,
            model.exit_layers,
            min_temperature=self.min_temperature,
            max_temperature=self.max_temperature,
        )
        temperatures = [fit.temperature for fit in fits]
        if is_distributed():
            temperatures = self._broadcast(temperatures, model.temperatures.device)
        model.set_temperatures(temperatures)
        logger.info("Exit head temperatures set to %s.", model.serving_temperatures.tolist())
        # Where compute_budget starts: the calibration data's compute at every threshold.
        probs = scaled_probabilities(head_outputs.logits, model.serving_temperatures.cpu())
        model.compute_curves = compute_curves(probs, model.engine.head_compute)
        return fits

    def _save_compute_curves(self, curves: Dict[str, List[List[float]]]) -> None:
        """Into the run's config.json, which `allennlp train` archives after this callback."""
        config_file = os.path.join(self.serialization_dir, CONFIG_NAME)
        with open(config_file) as config_in:
            config = json.load(config_in)
        config["model"][COMPUTE_CURVES_KEY] = curves
        with atomic_open(config_file) as config_out:
            json.dump(config, config_out, indent=4)
        logger.info("Dev compute curves (where compute_budget starts) stored in %s.", config_file)

    def _save_runner_temperatures(self, key: str, temperatures: List[float]) -> None:
        """Into the run's config.json, which `allennlp train` archives after this callback."""
        config_file = os.path.join(self.serialization_dir, CONFIG_NAME)
        with open(config_file) as config_in:
            config = json.load(config_in)
        set_runner_temperatures(config["model"], key, temperatures)
        with atomic_open(config_file) as config_out:
            json.dump(config, config_out, indent=4)
        logger.info("Temperatures of layer runner %r stored in %s.", key, config_file)

    def _collect(self, model: EarlyExitClassifier, instances: List[Instance]) -> HeadOutputs:
        """Every head's logits on the whole calibration data, on every worker."""
        description = "calibration: running every head"
        if not is_distributed():
            if not instances:
                raise ConfigurationError("the calibration data hold no instances")
            return collect_head_outputs(model, instances, self.batch_size, description)

        # Each forward pass updates the model's metrics, which reduce across workers: every worker
        # must run the same number of batches, so the shorter shards repeat some of their instances
        # (their outputs are dropped).
        device = model.temperatures.device
        num_local = len(instances)
        sizes = torch.tensor(
            [-num_local, math.ceil(num_local / self.batch_size)], device=device
        )  # (2,): minus the smallest shard, the most batches
        dist.all_reduce(sizes, op=dist.ReduceOp.MAX)
        if int(sizes[0]) == 0:
            raise ConfigurationError(
                "a worker got no calibration instances: the calibration data must hold at least "
                "one instance per worker"
            )
        num_batches = int(sizes[1])
        padding = max(0, (num_batches - 1) * self.batch_size + 1 - num_local)
        padded = instances + [instances[index % num_local] for index in range(padding)]
        local = collect_head_outputs(model, padded, self.batch_size, description)
        shard = (
            local.logits[:num_local],  # (num_local, num_heads, num_labels)
            None if local.labels is None else local.labels[:num_local],  # (num_local,)
        )
        shards: List[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(shards, shard)
        labels = [shard_labels for _, shard_labels in shards]
        return HeadOutputs(
            logits=torch.cat([shard_logits for shard_logits, _ in shards], dim=0),
            labels=None if any(part is None for part in labels) else torch.cat(labels, dim=0),
        )

    @staticmethod
    def _broadcast(temperatures: List[float], device: torch.device) -> List[float]:
        values = torch.tensor(temperatures, dtype=torch.float64, device=device)  # (num_heads,)
        dist.broadcast(values, src=0)
        return values.tolist()

    def _save(
        self,
        trainer: "GradientDescentTrainer",
        model: EarlyExitClassifier,
        fits: List[TemperatureFit],
        source: str,
    ) -> None:
        temperatures = model.temperatures.tolist()
        weights_file = self._best_weights_file(trainer)
        if os.path.exists(weights_file):
            store_temperatures_in_weights(weights_file, temperatures)
        else:
            logger.warning(
                "No best-weights file %s: the temperatures are set in the model in memory only.",
                weights_file,
            )
        report_file = os.path.join(self.serialization_dir, CALIBRATION_REPORT_NAME)
        with atomic_path(report_file) as temporary:  # never half a report
            write_calibration_report(
                temporary,
                fits,
                model.exit_layers,
                data=source,
                temperature_range=[self.min_temperature, self.max_temperature],
            )
        logger.info(
            "Calibrated the exit heads on %d instances (%s); temperatures %s, report in %s:\n%s",
            fits[0].num_instances,
            source,
            temperatures,
            report_file,
            format_calibration_table(fits, model.exit_layers),
        )
