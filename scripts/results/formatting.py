"""Small formatting helpers shared by the report's sections."""

from typing import Any, Dict, Optional, Tuple

from scripts.results.settings import DATASETS


def pct(value: float) -> str:
    """A fraction as accuracy points: `86.9`."""
    return f"{100 * value:.1f}"


def points(value: float) -> str:
    """An accuracy difference in points, signed: `+0.5`, `-1.0`, `0.0`."""
    text = f"{100 * value:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def title(dataset: str) -> str:
    return DATASETS[dataset]["title"]


def policy_json(threshold: float) -> Dict[str, Any]:
    """The JSON of the paper's rule at `threshold`, as results files hold policies."""
    return {"type": "max_probability", "threshold": threshold}


def parameters(policy: Dict[str, Any]) -> str:
    """A policy's parameters in words: `threshold 0.84`, `threshold 0.9, patience 2`."""
    return ", ".join(f"{name} {value:g}" for name, value in policy.items() if name != "type")


def named(policy: Dict[str, Any]) -> str:
    """A policy in words: `max_probability threshold 0.84`, `patience 2`."""
    return (
        f"{policy['type']} {parameters(policy)}"
        if policy["type"] != "patience"
        else (parameters(policy))
    )


def speedup(entry: Dict, policy: Dict[str, Any], batch_size: int) -> Optional[float]:
    """The measured speedup of `policy` at `batch_size`; `None` where it was not timed."""
    for timing in entry.get("timings", []):
        if timing["policy"] == policy and timing["batch_size"] == batch_size:
            return timing["speedup"]
    return None


def speedups(entry: Dict, policy: Dict[str, Any]) -> Tuple[str, str]:
    """The measured speedups of `policy` at batch size 1 and 32 (`-` where not timed)."""
    values = [speedup(entry, policy, batch_size) for batch_size in (1, 32)]
    cells = ["-" if value is None else f"{value:.2f}x" for value in values]
    return cells[0], cells[1]


def format_lr(lr: float) -> str:
    """`1e-4` for 0.0001, `5e-5` for 5e-05, `2.5e-5` for 2.5e-05."""
    mantissa, exponent = f"{lr:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"
