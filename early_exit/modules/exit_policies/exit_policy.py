"""
What every exit policy shares: the per-head decision interface the inference engine calls, the one
all-heads rule the sweep and calibration call, parameter checks, and the temperature-scaled
probabilities decisions are taken on.
"""

from functools import lru_cache
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from allennlp.common import Params, Registrable
from allennlp.common.checks import ConfigurationError
from overrides import overrides


class ExitDecision(NamedTuple):
    """
    What a policy decided at one head for the rows that reached it.

    # Attributes

    count : `int`
        How many rows exit here.
    exits : `Optional[torch.BoolTensor]`
        `(num_rows,)`, true for the rows that exit. May be `None` when `count` is 0 or every row
        (the engine needs no mask then; a policy may skip building it).
    state : `Optional[torch.Tensor]`
        The rows' state after this head, `(num_rows, ...)` (see `ExitPolicy.initial_state`).
    """

    count: int
    exits: Optional[torch.Tensor]
    state: Optional[torch.Tensor]


class ExitPolicy(Registrable):
    """
    When an instance leaves the network: after each head but the last, the policy sees that head's
    temperature-scaled probabilities of the rows still running (and their state, if it keeps one)
    and says which rows exit. The last head always answers. Decisions are per row; a policy's
    per-row state (for patience, the streak so far) follows each row through packing, selecting
    and merging in the engine, so a row is decided alike whatever batch it is in.

    Subclasses implement `decide`, and `initial_state` if they keep per-row state. `exit_heads`
    applies `decide` head after head to every head's cached probabilities: the sweep, calibration
    and the all-heads forward take exactly the engine's decisions through it.

    Registered names: `max_probability` (the default, the paper's rule), `entropy`, `patience`,
    `confident_patience`, and `compute_budget` (adapts a threshold to hold a mean compute).
    """

    default_implementation = "max_probability"

    @classmethod
    @overrides
    def from_params(  # type: ignore[override]
        cls, params: Params, constructor_to_call=None, constructor_to_inspect=None, **extras
    ) -> "ExitPolicy":
        """
        As `Registrable.from_params`, with `threshold` and `patience` checked before allennlp
        converts them: it would turn `true` into the patience 1 and report a string threshold as a
        `TypeError` rather than a configuration error.
        """
        if isinstance(params, Params):
            name = params.get("type", cls.default_implementation)
            known = Registrable._registry[ExitPolicy]
            subclass = cls.by_name(name) if cls is ExitPolicy and name in known else cls
            subclass.check_params(params)
        return super().from_params(params, constructor_to_call, constructor_to_inspect, **extras)

    @classmethod
    def check_params(cls, params: Params) -> None:
        """Checks a config's raw values (before allennlp converts them) where a policy needs to."""
        if params.get("threshold") is not None:
            check_fraction("threshold", params.get("threshold"))
        if params.get("patience") is not None:
            check_patience(params.get("patience"))

    def initial_state(self, num_rows: int, device: torch.device) -> Optional[torch.Tensor]:
        """The per-row state before the first head, `(num_rows, ...)`, or `None` (no state)."""
        return None

    def decide(self, probs: torch.Tensor, state: Optional[torch.Tensor]) -> ExitDecision:
        """
        # Parameters

        probs : `torch.Tensor`
            `(num_rows, num_labels)`: temperature-scaled probabilities of one head that is not the
            last, in the head's dtype.
        state : `Optional[torch.Tensor]`
            The rows' state before this head (`initial_state`, then what earlier heads returned).
        """
        raise NotImplementedError

    def never_exits_early(self, num_heads: int) -> bool:
        """
        True when no row can exit before the last head (the engine then skips the other heads).
        """
        return False

    def parameters(self) -> Dict[str, Any]:
        """The policy's parameters by name, as a config gives them."""
        raise NotImplementedError

    def adapts(self) -> bool:
        """
        True for a policy that changes its parameter as the stream goes (`compute_budget`): each
        batch is decided with the parameter the earlier batches left, so batches run whole, in
        order, each followed by `observe`.
        """
        return False

    def adapted_threshold(self) -> Optional[float]:
        """The threshold the next batch is decided with, for an adapting policy; else `None`."""
        return None

    def observe(self, computes: Sequence[float]) -> None:
        """
        Called after each batch with the relative compute of its instances, in order (an adapting
        policy moves its parameter here; the others ignore it).
        """

    def use_compute_curves(self, curves: Optional[Dict[str, List[List[float]]]]) -> None:
        """
        Called before each batch with the model's dev compute curves (`{policy name: [[threshold,
        relative compute], ...]}`, stored by calibration; `None` for an archive without them): a
        policy that starts from a recommendation (`compute_budget`) takes it here.
        """

    def check_heads(self, head_compute: Sequence[float]) -> None:
        """
        A `ConfigurationError` if the policy cannot work with heads of these relative computes
        (`(num_heads,)`, increasing); called before a model runs it.
        """

    def metrics(self, reset: bool = False) -> Dict[str, float]:
        """
        What the model's metrics report about the policy (as `exit_policy_<name>_<key>`): its
        parameters; an adapting policy adds what it did since the last reset.
        """
        return {name: float(value) for name, value in self.parameters().items()}

    def conservativeness(self) -> tuple:
        """
        A sort key among policies of this type, fixed whatever the data: larger exits later (or
        as late). Risk control walks candidates from the largest down.
        """
        raise NotImplementedError

    def sweep_grid(self, num_heads: int) -> List["ExitPolicy"]:
        """Policies of this type to sweep, from the most conservative to the most aggressive."""
        raise NotImplementedError

    def to_json(self) -> Dict[str, Any]:
        """`{"type": name, **parameters}`: what a config or `--predictor-args` takes."""
        return {"type": self.registered_name(), **self.parameters()}

    @classmethod
    def registered_name(cls) -> str:
        for name, (subclass, _) in Registrable._registry[ExitPolicy].items():
            if subclass is cls:
                return name
        raise ValueError(f"{cls.__name__} is not a registered exit policy")

    def describe(self) -> str:
        """A short human-readable form, e.g. `max_probability(threshold=0.9)`."""
        arguments = ", ".join(f"{key}={value}" for key, value in self.parameters().items())
        return f"{self.registered_name()}({arguments})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.parameters() == self.parameters()

    def __hash__(self) -> int:
        return hash((type(self), tuple(self.parameters().items())))

    def __repr__(self) -> str:
        return self.describe()

    def exit_heads(self, head_probs: torch.Tensor) -> torch.LongTensor:
        """
        The head each instance exits at, from every head's probabilities, exactly as the engine
        decides head after head.

        # Parameters

        head_probs : `torch.Tensor`
            `(num_instances, num_heads, num_labels)`, temperature-scaled.

        # Returns

        `torch.LongTensor` `(num_instances,)`: indices into the heads.
        """
        num_instances, num_heads = head_probs.shape[:2]
        device = head_probs.device
        exit_head = torch.full((num_instances,), num_heads - 1, dtype=torch.long, device=device)
        if self.never_exits_early(num_heads):
            return exit_head
        done = torch.zeros(num_instances, dtype=torch.bool, device=device)
        state = self.initial_state(num_instances, device)
        for head in range(num_heads - 1):
            decision = self.decide(head_probs[:, head], state)
            state = decision.state
            exits = exit_mask(decision, num_instances, device)
            exit_head[exits & ~done] = head
            done |= exits
        return exit_head


def stream_exit_heads(
    policy: ExitPolicy, head_probs: torch.Tensor, head_compute: Sequence[float], batch_size: int
) -> Tuple[torch.LongTensor, List[Optional[float]]]:
    """
    The exits of a stream of instances whose every head's probabilities are known, as the model
    decides them batch after batch (`exit_heads`, then `observe`): an adapting policy's simulation
    on arrays is its own code. `policy` is advanced as by the stream.

    # Parameters

    head_probs : `torch.Tensor`
        `(num_instances, num_heads, num_labels)`, temperature-scaled, in stream order.
    head_compute : `Sequence[float]`
        `(num_heads,)`: each head's relative compute.
    batch_size : `int`

    # Returns

    The exit head of each instance `(num_instances,)` and the threshold it was decided with
    (`adapted_threshold`; `None` for a fixed policy), per instance.
    """
    policy.check_heads(head_compute)
    heads, thresholds = [], []
    for start in range(0, head_probs.shape[0], batch_size):
        threshold = policy.adapted_threshold()
        batch_heads = policy.exit_heads(head_probs[start : start + batch_size])  # (batch,)
        batch_list = batch_heads.tolist()
        policy.observe([head_compute[head] for head in batch_list])
        heads.append(batch_heads)
        thresholds += [threshold] * len(batch_list)
    return torch.cat(heads), thresholds


def exit_mask(decision: ExitDecision, num_rows: int, device: torch.device) -> torch.BoolTensor:
    """`(num_rows,)`: the rows a decision lets exit (its mask, or all or none by its count)."""
    if decision.exits is not None:
        return decision.exits
    return torch.full((num_rows,), decision.count == num_rows, dtype=torch.bool, device=device)


def counted(exits: torch.BoolTensor, state: Optional[torch.Tensor] = None) -> ExitDecision:
    """An `ExitDecision` from a mask `(num_rows,)`: the count is the engine's one sync per head."""
    return ExitDecision(int(exits.sum()), exits, state)


def fraction_grid(step: float, extra: Sequence[float] = ()) -> List[float]:
    """
    `0, step, 2 * step, ..., 1.0` plus `extra`, sorted, without duplicates (rounded to 10 places).
    """
    num_steps = int(1.0 / step + 1e-9)
    values = [index * step for index in range(num_steps + 1)] + list(extra) + [1.0]
    return sorted({round(value, 10) for value in values})


def check_fraction(name: str, value: Any) -> float:
    """`value` as a float in [0, 1]; a `ConfigurationError` for anything else (booleans too)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number in [0, 1], got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also false for NaN
        raise ConfigurationError(f"{name} must be in [0, 1], got {value}")
    return value


def check_patience(value: Any) -> int:
    """`value` as an integer >= 1; a `ConfigurationError` for anything else (booleans too)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"patience must be an integer >= 1, got {value!r}")
    return value


@lru_cache(maxsize=256)
def rounded(value: float, dtype: torch.dtype) -> float:
    """`value` rounded to `dtype`, as a comparison of a `dtype` tensor with `value` rounds it."""
    return float(torch.tensor(value, dtype=torch.double).to(dtype))


def scaled_probabilities(
    logits: torch.Tensor, temperatures: Union[torch.Tensor, float]
) -> torch.Tensor:
    """
    Temperature-scaled probabilities, the ones exit decisions are taken on.

    # Parameters

    logits : `torch.Tensor`
        Raw logits: `(batch_size, num_heads, num_labels)` for every head, or `(batch_size,
        num_labels)` for one head.
    temperatures : `Union[torch.Tensor, float]`
        `(num_heads,)` for every head, or a 0-dimensional tensor or a float for one head (the
        same probabilities: a float is a scalar to the division as a 0-dimensional tensor is).

    # Returns

    `torch.Tensor` of the shape of `logits`.
    """
    if isinstance(temperatures, torch.Tensor) and temperatures.dim() > 0:
        # one per head: (num_heads, 1) against (batch_size, num_heads, num_labels)
        temperatures = temperatures.unsqueeze(-1)
    return torch.softmax(logits / temperatures, dim=-1)
