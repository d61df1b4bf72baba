import torch

from early_exit.modules.exit_policies import ConfidentPatiencePolicy, PatiencePolicy


def _head_probs(predictions, confidence=0.9):
    """`predictions[row][head]` labels -> `(rows, heads, 2)` probabilities."""
    probs = torch.full((len(predictions), len(predictions[0]), 2), 1 - confidence)
    for row, labels in enumerate(predictions):
        for head, label in enumerate(labels):
            probs[row, head, label] = confidence
    return probs


def test_patience_exits_once_the_prediction_held_for_patience_heads():
    predictions = [
        [0, 0, 1, 1, 1],  # 2 in a row at head 1
        [0, 1, 0, 1, 1],  # 2 in a row only at head 4 (the last)
        [1, 1, 1, 0, 0],  # 3 in a row at head 2
        [0, 1, 1, 0, 0],
    ]
    head_probs = _head_probs(predictions)
    assert PatiencePolicy(1).exit_heads(head_probs).tolist() == [0, 0, 0, 0]
    assert PatiencePolicy(2).exit_heads(head_probs).tolist() == [1, 4, 1, 2]
    assert PatiencePolicy(3).exit_heads(head_probs).tolist() == [4, 4, 2, 4]
    assert not PatiencePolicy(4).never_exits_early(5)
    assert PatiencePolicy(5).never_exits_early(5)
    assert PatiencePolicy(7).exit_heads(head_probs).tolist() == [4, 4, 4, 4]


def test_patience_state_follows_rows_one_head_at_a_time():
    policy = PatiencePolicy(2)
    head_probs = _head_probs([[0, 0, 1], [1, 0, 0]])
    state = policy.initial_state(2, torch.device("cpu"))
    first = policy.decide(head_probs[:, 0], state)
    assert first.count == 0
    second = policy.decide(head_probs[:, 1], first.state)
    assert second.exits.tolist() == [True, False]
    # The engine goes on with the second row alone, its state selected with it.
    third = policy.decide(head_probs[1:, 2], second.state[1:])
    assert third.exits.tolist() == [True]


def test_confident_patience_needs_consecutive_confident_heads():
    confidence = torch.tensor(
        [
            [0.95, 0.95, 0.5, 0.5],  # two confident heads at once
            [0.95, 0.5, 0.95, 0.95],  # the streak restarts at head 2
            [0.5, 0.5, 0.5, 0.5],
        ]
    )
    head_probs = torch.stack([confidence, 1 - confidence], dim=-1)  # (3, 4, 2)
    assert ConfidentPatiencePolicy(0.9, 2).exit_heads(head_probs).tolist() == [1, 3, 3]
    assert ConfidentPatiencePolicy(0.9, 1).exit_heads(head_probs).tolist() == [0, 0, 3]
    assert ConfidentPatiencePolicy(1.0, 1).exit_heads(head_probs).tolist() == [3, 3, 3]
    assert ConfidentPatiencePolicy(1.0, 1).never_exits_early(4)
    assert ConfidentPatiencePolicy(0.5, 4).never_exits_early(4)


def test_half_precision_probabilities_decide_as_float32_ones_where_exact():
    head_probs = _head_probs([[0, 0, 1], [1, 0, 0]], confidence=0.75)  # exact in every dtype
    for dtype in (torch.float16, torch.bfloat16):
        for policy in (PatiencePolicy(2), ConfidentPatiencePolicy(0.75, 2)):
            assert torch.equal(
                policy.exit_heads(head_probs.to(dtype)), policy.exit_heads(head_probs)
            )


def test_sweep_grids_run_from_conservative_to_aggressive():
    assert [p.patience for p in PatiencePolicy(1).sweep_grid(4)] == [4, 3, 2, 1]
    grid = ConfidentPatiencePolicy(0.9, 1).sweep_grid(4)
    assert grid[0] == ConfidentPatiencePolicy(0.999, 3)
    assert grid[-1] == ConfidentPatiencePolicy(0.5, 1)
