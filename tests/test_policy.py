"""Policy function tests (docs/original.md §4): schedules, padding, samplers, init."""
import numpy as np
import pytest
import scipy.special
import torch

from models.policy import (execute_probabilities, gumbel_gates, hard_policy, init_logits, num_train_layers,
                           pad_gates, sample_policy_numpy, sample_training_gates, temperature_at)


def test_temperature_after_p_policy_epochs():
    assert temperature_at(5.0, 0.965, 0) == 5.0
    assert temperature_at(5.0, 0.965, 3) == ((5.0 * 0.965) * 0.965) * 0.965  # the original's running product
    assert temperature_at(5.0, 0.965, 40) == pytest.approx(5.0 * 0.965 ** 40)
    with pytest.raises(ValueError):
        temperature_at(5.0, 0.965, -1)


def test_curriculum_window():
    assert [num_train_layers(p, 3, True) for p in range(7)] == [1, 1, 1, 2, 2, 2, 3]
    assert num_train_layers(45, 3, True) == 16
    assert num_train_layers(15, 1, True) == 16
    assert num_train_layers(100, 3, False) is None
    with pytest.raises(ValueError, match="curriculum_speed"):
        num_train_layers(1, 0, True)


def test_pad_gates_curriculum_and_skip_layer():
    gates = torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.9, 0.1]])
    execute = [1.0, 0.0]
    # all rows gated, P = L
    assert torch.equal(pad_gates(gates, 3), gates)
    # curriculum: only the last 2 rows gated
    assert torch.equal(pad_gates(gates, 3, 2), torch.tensor([execute, [0.6, 0.4], [0.9, 0.1]]))
    # window larger than P is capped at P; skip_layer = 2 (P = 3 rows for L = 5 blocks)
    assert torch.equal(pad_gates(gates, 5, 10), torch.tensor([execute, execute, [0.2, 0.8], [0.6, 0.4], [0.9, 0.1]]))
    # no gated rows at all: every block executes (gates[-0:] would have been everything)
    assert torch.equal(pad_gates(gates, 3, 0), torch.tensor([execute] * 3))
    # per instance [B, P, 2] -> [B, L, 2]
    batched = pad_gates(torch.stack([gates, 1 - gates]), 4, 1)
    assert batched.shape == (2, 4, 2) and torch.equal(batched[1, 3], 1 - gates[2])
    assert torch.equal(batched[:, :3], torch.tensor([[execute] * 3] * 2))


def test_pad_gates_dtype_device_and_gradient():
    hard = torch.tensor([[1, 0], [0, 1]])  # int64 policy from a pickle
    padded = pad_gates(hard, 4)
    assert padded.dtype == torch.float32 and torch.equal(padded, torch.tensor([[1.0, 0], [1, 0], [1, 0], [0, 1]]))
    assert pad_gates(hard.double(), 4).dtype == torch.float64
    logits = torch.zeros(3, 2, requires_grad=True)
    (pad_gates(torch.softmax(logits, -1), 5, 2) * torch.arange(10.0).view(5, 2)).sum().backward()
    assert torch.equal(logits.grad[0], torch.zeros(2)) and logits.grad[1:].abs().sum() > 0
    with pytest.raises(ValueError, match="only 2 blocks"):
        pad_gates(torch.ones(3, 2), 2)
    with pytest.raises(ValueError, match=r"\[P, 2\]"):
        pad_gates(torch.ones(3), 4)


def _by_hand(logits_list, seed):
    """docs/original.md §4.4 parity recipe: one uniform per (task, row), execute iff u < p0 / (p0 + p1)."""
    np.random.seed(seed)
    policies = []
    for logits in logits_list:
        p = scipy.special.softmax(logits.numpy().astype(np.float32), axis=-1).astype(np.float64)
        rows = []
        for p0, p1 in p:
            s = int(np.random.random_sample() < p0 / (p0 + p1))
            rows.append([s, 1 - s])
        policies.append(torch.tensor(rows, dtype=torch.int64))
    return policies


LOGITS = [torch.tensor([[0.5, 0.5], [2.0, -1.0], [-1.0, 3.0], [0.1, 0.0], [0.0, 0.3]]),
          torch.tensor([[0.0, -10.0], [1.0, 1.5], [0.7, 0.2], [-0.4, 0.4], [0.5, 0.5]]),
          torch.randn(5, 2, generator=torch.Generator().manual_seed(1))]


@pytest.mark.parametrize("seed", [0, 48, 12])
def test_sample_policy_numpy_matches_seeded_recipe(seed):
    expected = _by_hand(LOGITS, seed)
    np.random.seed(seed)
    sampled = sample_policy_numpy(LOGITS)
    next_uniform = np.random.random_sample()
    for got, want in zip(sampled, expected):
        assert got.dtype == torch.int64 and got.shape == (5, 2)
        assert torch.equal(got, want)
    # exactly K * P uniforms consumed from the global RNG
    np.random.seed(seed)
    np.random.random_sample(15)
    assert np.random.random_sample() == next_uniform
    # a RandomState with the same seed gives the same policies
    with_rng = sample_policy_numpy(LOGITS, rng=np.random.RandomState(seed))
    assert all(torch.equal(a, b) for a, b in zip(with_rng, expected))


def test_sample_policy_numpy_follows_probabilities_and_rejects_generators():
    sure = [torch.tensor([[0.0, -30.0], [-30.0, 0.0]])]
    assert torch.equal(sample_policy_numpy(sure, np.random.RandomState(0))[0], torch.tensor([[1, 0], [0, 1]]))
    many = sample_policy_numpy([torch.tensor([[1.0, 0.0]] * 4000)], np.random.RandomState(1))[0]
    assert abs(many[:, 0].float().mean().item() - torch.sigmoid(torch.tensor(1.0)).item()) < 0.03
    with pytest.raises(ValueError, match="RandomState"):
        sample_policy_numpy(sure, rng=np.random.default_rng(0))


def test_hard_policy_any_number_of_tasks_and_ties():
    logits = [torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]),
              torch.tensor([[-2.0, -1.0], [3.0, 2.0], [0.0, 0.0]]),
              torch.tensor([[0.0, 1e-6], [1e-6, 0.0], [-1.0, -1.0]]),
              torch.tensor([[9.0, -9.0], [-9.0, 9.0], [0.1, 0.2]], requires_grad=True)]
    policies = hard_policy(logits)
    assert len(policies) == 4 and all(p.dtype == torch.int64 and not p.requires_grad for p in policies)
    assert [p[:, 0].tolist() for p in policies] == [[1, 0, 1], [0, 1, 1], [0, 1, 1], [1, 0, 0]]  # ties execute
    assert all(torch.equal(p.sum(1), torch.ones(3, dtype=torch.int64)) for p in policies)


def test_init_methods():
    assert torch.equal(init_logits(4, "equal"), torch.full((4, 2), 0.5))
    torch.manual_seed(5)
    expected = 1e-3 * torch.randn(4, 2)
    torch.manual_seed(5)
    assert torch.equal(init_logits(4, "random"), expected)
    assert torch.equal(init_logits(2, "all_chosen", -10), torch.tensor([[0.0, -10.0], [0.0, -10.0]]))
    assert execute_probabilities(init_logits(2, "all_chosen", -10)).min() > 0.9999
    with pytest.raises(ValueError, match="init_neg_logits"):
        init_logits(2, "all_chosen")
    with pytest.raises(ValueError, match="unknown init_method 'zeros'"):
        init_logits(2, "zeros")


def test_gumbel_gates_and_execute_probabilities():
    logits = torch.zeros(6, 2, requires_grad=True)
    torch.manual_seed(0)
    soft = gumbel_gates(logits, 5.0)
    assert torch.allclose(soft.sum(-1), torch.ones(6)) and ((soft > 0) & (soft < 1)).all()
    hard = gumbel_gates(logits, 5.0, hard=True)
    assert set(hard.flatten().tolist()) <= {0.0, 1.0} and torch.equal(hard.sum(-1), torch.ones(6))
    hard[:, 0].sum().backward()  # straight-through gradient reaches the logits
    assert logits.grad.abs().sum() > 0
    assert torch.allclose(execute_probabilities(torch.tensor([[0.5, 0.5], [0.0, -1.0]])),
                          torch.tensor([0.5, 1 / (1 + np.exp(-1.0))], dtype=torch.float32))
    with pytest.raises(ValueError, match="temperature"):
        gumbel_gates(logits, 0.0)


def test_sample_training_gates_pads_each_task():
    logits = [torch.zeros(4, 2, requires_grad=True), torch.ones(4, 2, requires_grad=True)]
    torch.manual_seed(0)
    policies, gates = sample_training_gates(logits, 5.0, num_blocks=6, num_gated=2)
    torch.manual_seed(0)
    first = gumbel_gates(logits[0], 5.0)
    assert torch.equal(policies[0], first) and [p.shape for p in policies] == [(4, 2), (4, 2)]
    assert [g.shape for g in gates] == [(6, 2), (6, 2)]
    assert torch.equal(gates[0][:4], torch.tensor([[1.0, 0.0]] * 4)) and torch.equal(gates[0][4:], first[2:])
    sum(g[:, 0].sum() for g in gates).backward()
    assert logits[1].grad[2:].abs().sum() > 0 and torch.equal(logits[1].grad[:2], torch.zeros(2, 2))
