"""
Exit policies: when an instance leaves the network. Each is an allennlp `Registrable` picked by
name in a config (`"exit_policy": {"type": "entropy", "threshold": 0.3}`).
"""

from early_exit.modules.exit_policies.exit_policy import (
    ExitDecision,
    ExitPolicy,
    scaled_probabilities,
    stream_exit_heads,
)
from early_exit.modules.exit_policies.max_probability import MaxProbabilityPolicy
from early_exit.modules.exit_policies.entropy import EntropyPolicy
from early_exit.modules.exit_policies.patience import PatiencePolicy
from early_exit.modules.exit_policies.confident_patience import ConfidentPatiencePolicy
from early_exit.modules.exit_policies.compute_budget import ComputeBudgetPolicy
from early_exit.modules.exit_policies.compute_window import ComputeWindow
