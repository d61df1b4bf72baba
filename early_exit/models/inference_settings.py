import dataclasses
from dataclasses import dataclass

from allennlp.common.checks import ConfigurationError

from early_exit.modules.exit_policies import ExitPolicy


@dataclass(frozen=True)
class InferenceSettings:
    """
    What one inference call runs with, as one immutable value: the engine reads these instead of
    switches on the model, so that callers (a predictor, a stream, a sweep) pass their own without
    changing the shared model, and two of them with different policies can share one model.
    `EarlyExitClassifier.inference_settings()` gives the model's own (its config's defaults).

    # Attributes

    exit_policy : `ExitPolicy`
        Who exits where.
    run_all_heads : `bool`, optional (default = `False`)
        Run every layer and head and return every head's outputs (calibration, sweeps).
    packed : `bool`, optional (default = `True`)
        At inference, run the layers on packed rows where the encoder allows it.
    """

    exit_policy: ExitPolicy
    run_all_heads: bool = False
    packed: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.exit_policy, ExitPolicy):
            raise ConfigurationError(f"exit_policy must be an ExitPolicy, got {self.exit_policy!r}")
        for name in ("run_all_heads", "packed"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(
                    f"{name} must be true or false, got {getattr(self, name)!r}"
                )

    def replace(self, **changes) -> "InferenceSettings":
        """A copy with `changes` (validated like the constructor's arguments)."""
        return dataclasses.replace(self, **changes)
