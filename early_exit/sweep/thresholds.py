"""
Threshold grids for sweeps: the default grid, user-given lists and their validation.
"""

from typing import Iterable, List, Sequence

from allennlp.common.checks import ConfigurationError

# Extra grid points near 1.0, where confident models make most of their decisions.
NEAR_ONE_THRESHOLDS = (0.995, 0.998, 0.999, 0.9995, 0.9999)

# Thresholds are rounded to this many decimals, so that 0.1 * 3 is 0.3 and grids have no duplicates.
_DECIMALS = 10


def check_thresholds(thresholds: Iterable[float], name: str = "thresholds") -> List[float]:
    """
    Validates thresholds and returns them as sorted, de-duplicated floats.

    # Raises

    `ConfigurationError` if a threshold is not a number in [0, 1] or none is given.
    """
    checked = set()
    for threshold in thresholds:
        if isinstance(threshold, bool):
            raise ConfigurationError(f"{name} must be numbers in [0, 1], got {threshold!r}")
        try:
            value = float(threshold)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"{name} must be numbers in [0, 1], got {threshold!r}"
            ) from None
        if not 0.0 <= value <= 1.0:
            raise ConfigurationError(f"{name} must be in [0, 1], got {threshold}")
        checked.add(round(value, _DECIMALS))
    if not checked:
        raise ConfigurationError(f"no {name} given")
    return sorted(checked)


def parse_thresholds(text: str, name: str = "thresholds") -> List[float]:
    """
    Parses a comma-separated list such as `"0.5,0.9,0.99"` into sorted, de-duplicated thresholds.

    # Raises

    `ConfigurationError` for an entry that is not a number in [0, 1], or an empty list.
    """
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    values = []
    for entry in entries:
        try:
            values.append(float(entry))
        except ValueError:
            raise ConfigurationError(
                f"{name} must be comma-separated numbers in [0, 1], e.g. 0.5,0.9,0.99; "
                f"got {entry!r} in {text!r}"
            ) from None
    return check_thresholds(values, name)


def default_threshold_grid(
    grid_step: float = 0.01, near_one: Sequence[float] = NEAR_ONE_THRESHOLDS
) -> List[float]:
    """
    `0, grid_step, 2 * grid_step, ..., 1.0` plus the `near_one` points, sorted. 1.0 (the full model)
    is always included.

    # Raises

    `ConfigurationError` if `grid_step` is not in (0, 1].
    """
    try:
        grid_step = float(grid_step)
    except (TypeError, ValueError):
        raise ConfigurationError(f"grid step must be a number in (0, 1], got {grid_step!r}")
    if not 0.0 < grid_step <= 1.0:
        raise ConfigurationError(f"grid step must be in (0, 1], got {grid_step}")
    num_steps = int(1.0 / grid_step + 1e-9)
    grid = [index * grid_step for index in range(num_steps + 1)]
    return check_thresholds(grid + list(near_one) + [1.0])
