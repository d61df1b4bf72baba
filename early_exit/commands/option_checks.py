"""
Command-line options that do nothing without another are refused, not silently ignored: such an
option's parser default is `None` (so that giving it can be told from leaving it out), and the
command fills in its documented default after this check.
"""

import argparse
from typing import Sequence

from allennlp.common.checks import ConfigurationError


def refuse_unless(
    args: argparse.Namespace, options: Sequence[str], applies: bool, requirement: str
) -> None:
    """
    Raises a `ConfigurationError` naming those of `options` (flags such as `"--delta"`) that were
    given, when they do nothing (`applies` is false): `requirement` says what they need.
    """
    given = [
        flag for flag in options if getattr(args, flag.lstrip("-").replace("-", "_")) is not None
    ]
    if given and not applies:
        verb = "applies" if len(given) == 1 else "apply"
        raise ConfigurationError(f"{' and '.join(given)} {verb} only {requirement}")
