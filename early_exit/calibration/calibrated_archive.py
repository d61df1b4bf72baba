"""
Putting fitted temperatures into saved weights and model archives.
"""

import json
import os
import tarfile
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from allennlp.common.checks import ConfigurationError
from allennlp.common.file_utils import cached_path
from allennlp.models.archival import CONFIG_NAME, _WEIGHTS_NAME

from early_exit.calibration.compute_curves import COMPUTE_CURVES_KEY
from early_exit.common.files import atomic_write, write_errors_named

TEMPERATURES_KEY = "temperatures"
RUNNER_TEMPERATURES_KEY = "runner_temperatures"
EXIT_POLICY_KEY = "exit_policy"
# The promise that comes with an archive's default exit policy, when calibrate certified it.
GUARANTEE_NAME = "exit_policy_guarantee.json"


def set_runner_temperatures(
    model_config: Dict[str, Any], runner_key: str, temperatures: Sequence[float]
) -> None:
    """
    Puts a layer runner's own temperatures into a model's config (`config.json`'s `model` block):
    under `runner_temperatures[runner_key]`, every other runner's left as they are.
    """
    model_config.setdefault(RUNNER_TEMPERATURES_KEY, {})[runner_key] = list(temperatures)


def store_temperatures_in_weights(
    weights_file: Union[str, os.PathLike], temperatures: Sequence[float]
) -> None:
    """
    Replaces the `temperatures` buffer in a saved state dict (`best.th`, an archive's `weights.th`),
    leaving every other tensor as it is.

    # Raises

    `ConfigurationError` if the file holds no `temperatures` entry of the right size (it is not the
    state of an `early_exit_classifier`).
    """
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    old = state.get(TEMPERATURES_KEY)
    if old is None or old.numel() != len(temperatures):
        raise ConfigurationError(
            f"{weights_file} holds no {TEMPERATURES_KEY!r} tensor with {len(temperatures)} values; "
            "is it the state of an early_exit_classifier?"
        )
    state[TEMPERATURES_KEY] = torch.tensor(list(temperatures), dtype=old.dtype).view_as(old)
    # A crash never leaves half a file, and a hard link to the old file (the trainer hard-links the
    # best weights to its checkpoint) keeps the old content.
    atomic_write(weights_file, lambda path: torch.save(state, path))


def write_calibrated_archive(
    archive_file: Union[str, os.PathLike],
    output_file: Union[str, os.PathLike],
    temperatures: List[float],
    exit_policy: Optional[Dict[str, Any]] = None,
    guarantee: Optional[Dict[str, Any]] = None,
    runner_key: Optional[str] = None,
    compute_curves: Optional[Dict[str, List[List[float]]]] = None,
) -> None:
    """
    Writes a copy of the model archive `archive_file` to `output_file` with new temperatures: in the
    weights (`weights.th`) and, for the record, under `model.temperatures` in `config.json`. Every
    other file of the archive (vocabulary, meta data, files added with `include_in_archive`) is
    copied unchanged. `archive_file` itself is only read.

    With `runner_key` (a layer runner's `calibration_key`, e.g. "onnxruntime_int8") the
    temperatures are that runner's own: stored under `model.runner_temperatures[runner_key]` in
    `config.json`, the weights and every other runner's temperatures left as they are.

    `exit_policy` (a policy's `to_json()`), when given, becomes the model's `exit_policy` in
    `config.json` (replacing a `confidence_threshold`), so that the archive predicts with it by
    default; `guarantee`, when given, is stored next to it as `exit_policy_guarantee.json`.
    `compute_curves` (`compute_curves.compute_curves`), when given, become the model's
    `compute_curves` in `config.json`: where `compute_budget` starts.
    """
    resolved = cached_path(str(archive_file))
    if os.path.isdir(resolved):
        raise ConfigurationError(
            f"{archive_file} is a directory; pass a model archive file (model.tar.gz)"
        )
    output_file = os.fspath(output_file)
    with tempfile.TemporaryDirectory(prefix="early_exit_calibrate_") as work_dir:
        # A failed write in the working copy names it: the temporary folder's disk is full.
        with write_errors_named(f"the working copy of the archive in {work_dir}"):
            content = os.path.join(work_dir, "archive")
            os.makedirs(content)
            with tarfile.open(resolved, "r:*") as archive:
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 (and the 3.8+ backports)
                    archive.extractall(content, filter="data")
                else:
                    archive.extractall(content)

            weights_file = os.path.join(content, _WEIGHTS_NAME)
            config_file = os.path.join(content, CONFIG_NAME)
            if not os.path.isfile(weights_file) or not os.path.isfile(config_file):
                raise ConfigurationError(
                    f"{archive_file} has no {_WEIGHTS_NAME} or no {CONFIG_NAME}; is it a model "
                    "archive?"
                )
            with open(config_file) as config_in:
                config = json.load(config_in)
            if runner_key is None:
                store_temperatures_in_weights(weights_file, temperatures)
                config["model"][TEMPERATURES_KEY] = list(temperatures)
            else:
                set_runner_temperatures(config["model"], runner_key, temperatures)
            if compute_curves is not None:
                config["model"][COMPUTE_CURVES_KEY] = compute_curves
            if exit_policy is not None:
                config["model"].pop("confidence_threshold", None)
                config["model"][EXIT_POLICY_KEY] = exit_policy
            if guarantee is not None:
                with open(os.path.join(content, GUARANTEE_NAME), "w") as guarantee_out:
                    json.dump(guarantee, guarantee_out, indent=2)
            with open(config_file, "w") as config_out:
                json.dump(config, config_out, indent=4)

        def pack(path: str) -> None:
            with tarfile.open(path, "w:gz") as new_archive:
                for name in sorted(os.listdir(content)):
                    new_archive.add(os.path.join(content, name), arcname=name)

        atomic_write(output_file, pack)  # never half an archive under the output's name
