"""
A configuration the user gave (a file, `-o` overrides, a device) that cannot be used, reported in
one line that names it, before any work where it can be checked first.

allennlp reports a missing configuration file as `FileNotFoundError: file x.jsonnet not found`, a
Jsonnet syntax error in the file or in `-o` as `RuntimeError: STATIC ERROR: 1:5: ...` (for `-o`
without saying where), and a value of the wrong type as `TypeError: Expected lr to be numeric.`,
each with a traceback. These become `ConfigurationError`s naming the file or the overrides.
"""

import contextlib
import os
import re
from os import PathLike
from typing import Any, Dict, Iterator, Optional, Union

import torch
from allennlp.common.checks import ConfigurationError
from allennlp.common.params import parse_overrides

from early_exit.common.overrides import UnknownOverrideError

# allennlp's from_params type checks: "Expected lr to be numeric.", "Expected x to be a int."
_WRONG_TYPE = re.compile(r"^Expected \S+ to be (numeric|an? \w+)\.?$")
_JSONNET = ("STATIC ERROR: ", "RUNTIME ERROR: ")


def jsonnet_message(error: BaseException) -> Optional[str]:
    """The message of a Jsonnet evaluation error (without its prefix), else `None`."""
    text = str(error)
    if isinstance(error, RuntimeError):
        for prefix in _JSONNET:
            if text.startswith(prefix):
                return text[len(prefix) :].strip().splitlines()[0]
    return None


def checked_overrides(overrides: Union[str, Dict[str, Any], None]) -> Dict[str, Any]:
    """`overrides` (`-o`) parsed as allennlp parses them, or a `ConfigurationError` naming them."""
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return overrides
    try:
        parsed = parse_overrides(overrides)
    except RuntimeError as error:
        message = jsonnet_message(error)
        if message is None:
            raise
        raise ConfigurationError(
            f"the overrides {overrides} are not valid JSON (or Jsonnet): {message}"
        ) from None
    if not isinstance(parsed, dict):
        raise ConfigurationError(
            f"the overrides {overrides} are a JSON {type(parsed).__name__}, not an object such as "
            '{"trainer.num_epochs": 1}'
        )
    return parsed


def check_configuration_file(path: Union[str, PathLike]) -> None:
    """A local configuration file that does not exist or is a directory, named in one line."""
    text = os.fspath(path)
    if "://" in text:
        return
    if not os.path.exists(text):
        raise ConfigurationError(f"{text}: configuration file not found")
    if os.path.isdir(text):
        raise ConfigurationError(f"{text}: a directory, not a configuration file")


@contextlib.contextmanager
def configuration_errors_named(
    source: Union[str, PathLike], overrides: Union[str, Dict[str, Any], None]
) -> Iterator[None]:
    """
    Around reading a configuration: the file and the overrides are checked first, and a Jsonnet
    error in the file becomes a `ConfigurationError` (Jsonnet's message names the file and line).
    """
    check_configuration_file(source)
    checked_overrides(overrides)
    try:
        yield
    except RuntimeError as error:
        message = jsonnet_message(error)
        if message is None:
            raise
        raise ConfigurationError(f"{message} (Jsonnet, in {os.fspath(source)})") from None


@contextlib.contextmanager
def overridden_values_checked(
    source: Union[str, PathLike],
    overrides: Union[str, Dict[str, Any], None],
    whole_run: bool = False,
) -> Iterator[None]:
    """
    Around building objects from a configuration: a value of the wrong type, which allennlp's
    `from_params` reports as a `TypeError` ("Expected confidence_threshold to be numeric."),
    becomes a `ConfigurationError` naming the configuration (`source`) and the overrides, and an
    override that sets nothing (`UnknownOverrideError`) is named with the configuration. Around
    loading an archive, only with overrides (its own configuration was loadable when it was
    trained). Around a `whole_run` (training, where any code may raise a `TypeError`), only
    allennlp's own type-check messages.
    """
    try:
        yield
    except UnknownOverrideError as error:
        raise ConfigurationError(f"{os.fspath(source)}: {error}") from error
    except TypeError as error:
        known = _WRONG_TYPE.match(str(error)) is not None
        if not (known if whole_run else overrides):
            raise
        with_overrides = f" with the overrides {overrides}" if overrides else ""
        raise ConfigurationError(f"{os.fspath(source)}{with_overrides}: {error}") from error


def check_cuda_device(device: Any, option: str = "--cuda-device") -> None:
    """
    A GPU index this machine does not have, named in one line (allennlp moves the model first).
    """
    if isinstance(device, torch.device) or device is None or int(device) < 0:
        return
    available = torch.cuda.device_count()
    if int(device) >= available:
        raise ConfigurationError(
            f"{option} {device}: this machine has {available} GPU(s) that torch can use; "
            f"give {option} -1 for the CPU"
        )
