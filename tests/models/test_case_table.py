"""The training cases' table: donor weights and a mixture prior whose component follows the conditions."""

from __future__ import annotations

import torch

from gliomagen.models.case_table import MISMATCH_LOG, donor_log_weights
from gliomagen.models.mapping import MappingNetwork
from gliomagen.training.latent_prior import responsibilities


def test_donor_weights_match_categories_and_kernel_continuous() -> None:
    case_cat = torch.tensor([[0], [0], [1]])
    case_cont = torch.tensor([[0.0], [2.0], [0.0]])
    w = donor_log_weights(torch.tensor([[0]]), torch.tensor([[0.0]]), case_cat, case_cont, [2]).exp()[0]
    assert float(w[2]) < 1e-100  # the other category
    assert abs(float(w[0] / w[1]) - float(torch.exp(torch.tensor(8.0)))) < 1e-2  # d = 2 sd at h = 0.5
    # no case of the requested category: the nearest ones, not an error
    w = donor_log_weights(torch.tensor([[1]]), torch.tensor([[2.0]]), case_cat, case_cont, [2]).exp()[0]
    assert abs(float(w.sum()) - 1) < 1e-9 and int(w.argmax()) == 2
    # an unset continuous value does not weigh
    w = donor_log_weights(torch.tensor([[0]]), torch.tensor([[9.0]]), case_cat, case_cont, [2],
                          cont_set=torch.tensor([[False]])).exp()[0]
    assert torch.allclose(w[:2], torch.tensor([0.5, 0.5], dtype=w.dtype), atol=1e-3)
    assert MISMATCH_LOG < -100


def _mapping_with_two_clusters() -> MappingNetwork:
    m = MappingNetwork(4, 8, cat_sizes=[3], n_cont=0, embed_dim=4, num_layers=1)
    offsets = torch.tensor([[-5.0, 0, 0, 0], [5.0, 0, 0, 0]])
    m.set_prior(torch.zeros(4), 0.1 * torch.eye(4), offsets, torch.tensor([0.5, 0.5]))
    mu = torch.tensor([[-5.0, 0, 0, 0]] * 3 + [[5.0, 0, 0, 0]] * 3)  # grade 0 left, grade 1 right
    resp = responsibilities(mu, m.z_tril, m.z_offsets, m.z_weights, m.z_mean)
    assert torch.allclose(resp, torch.tensor([[1.0, 0]] * 3 + [[0, 1.0]] * 3), atol=1e-4)
    m.set_case_table(torch.tensor([[0]] * 3 + [[1]] * 3), torch.zeros(6, 0), resp)
    return m


def test_mixture_component_follows_the_conditions() -> None:
    m = _mapping_with_two_clusters()
    z = torch.randn(400, 4, generator=torch.Generator().manual_seed(0))
    for code, sign in ((0, -1), (1, 1)):
        x = m.apply_prior(z, torch.full((400, 1), code), torch.zeros(400, 0))
        assert bool((torch.sign(x[:, 0]) == sign).all())  # every draw from its grade's cluster
    both = m.apply_prior(z, torch.full((400, 1), 2), torch.zeros(400, 0))  # grade unknown
    assert 150 < int((both[:, 0] > 0).sum()) < 250
    assert torch.equal(m.apply_prior(z), m.apply_prior(z))  # no conditions: the overall weights
    # the draw is a function of the seed: the same z and conditions give the same latent
    c = torch.randint(0, 2, (400, 1), generator=torch.Generator().manual_seed(1))
    assert torch.equal(m.apply_prior(z, c, torch.zeros(400, 0)), m.apply_prior(z, c, torch.zeros(400, 0)))


def test_case_table_travels_in_the_state_dict_and_old_ones_load() -> None:
    m = _mapping_with_two_clusters()
    fresh = MappingNetwork(4, 8, cat_sizes=[3], n_cont=0, embed_dim=4, num_layers=1)
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh.case_resp, m.case_resp) and fresh.training_conditions() is not None
    old = {k: v for k, v in m.state_dict().items() if not k.startswith("case_")}
    fresh = MappingNetwork(4, 8, cat_sizes=[3], n_cont=0, embed_dim=4, num_layers=1)
    fresh.load_state_dict(old)  # a checkpoint from before the table
    assert fresh.training_conditions() is None and fresh.component_weights(torch.zeros(1, 1).long(), torch.zeros(1, 0)) is None

