from __future__ import annotations

import numpy as np
import pytest
import torch
from generation_fixtures import tiny_generator, tiny_schema

from gliomagen.generation.sampling import (
    ConditionMeans,
    anatomy_layer,
    case_seeds,
    case_ws,
    map_z,
    mix_ws,
    seeded_z,
    truncate,
)


@pytest.fixture
def G():
    return tiny_generator(tiny_schema())


def _cond(schema, values, n=1):
    cat, cont = schema.encode(values)
    return np.repeat(cat[None], n, 0), np.repeat(cont[None], n, 0)


def test_case_seeds_follow_stylegan_convention() -> None:
    assert case_seeds(17, 3) == [17, 18, 19]
    z_all = seeded_z(case_seeds(5, 4), 8)
    z_one = seeded_z([7], 8)
    assert torch.equal(z_all[2], z_one[0])  # a case's z does not depend on its neighbours
    assert not torch.equal(z_all[0], z_all[1])


def test_condition_mean_is_the_average_mapping_output_and_is_cached(G) -> None:
    schema = tiny_schema()
    cat, cont = _cond(schema, {"grade": "HGG", "cohort": "GLI"})
    means = ConditionMeans(G, n_samples=2000, batch_size=700)
    m = means.get(torch.as_tensor(cat[0]), torch.as_tensor(cont[0]))
    z = torch.randn(20000, G.z_dim, generator=torch.Generator().manual_seed(123))
    ref = map_z(
        G, z, torch.as_tensor(cat).expand(20000, -1), torch.as_tensor(cont).expand(20000, -1)
    ).mean(0)
    spread = map_z(
        G, z[:2000], torch.as_tensor(cat).expand(2000, -1), torch.as_tensor(cont).expand(2000, -1)
    ).std(0)
    assert torch.all((m - ref).abs() < 4 * spread / 2000**0.5 + 1e-6)
    assert means.get(torch.as_tensor(cat[0]), torch.as_tensor(cont[0])) is m  # cached
    assert len(means) == 1
    other = means.get(
        *(torch.as_tensor(a[0]) for a in _cond(schema, {"grade": "LGG", "cohort": "SSA"}))
    )
    assert len(means) == 2
    assert (other - m).abs().max() > 10 * (
        spread / 2000**0.5
    ).max()  # a different condition, a different centre


def test_truncation_pulls_toward_the_condition_mean_not_the_global_mean(G) -> None:
    schema = tiny_schema()
    means = ConditionMeans(G, n_samples=512)
    cat, cont = _cond(schema, {"grade": "LGG", "cohort": "SSA", "age": 70}, n=3)
    w_mean = means.get(torch.as_tensor(cat[0]), torch.as_tensor(cont[0]))
    ws0 = case_ws(G, [1, 2, 3], cat, cont, psi=0.0, means=means)
    assert ws0.shape == (3, G.num_ws, G.w_dim)
    assert torch.allclose(ws0, w_mean.expand_as(ws0))  # psi 0: every case is the condition's mean
    ws1 = case_ws(G, [1, 2, 3], cat, cont, psi=1.0)
    ws_half = case_ws(G, [1, 2, 3], cat, cont, psi=0.5, means=means)
    assert torch.allclose(ws_half, 0.5 * (ws0 + ws1), atol=1e-6)
    assert not torch.allclose(w_mean, G.mapping.w_avg)  # not the global running mean


def test_truncate_is_the_stylegan_formula() -> None:
    w = torch.tensor([[2.0, 4.0]])
    c = torch.tensor([[1.0, 0.0]])
    assert torch.equal(truncate(w, c, 0.5), torch.tensor([[1.5, 2.0]]))
    assert truncate(w, c, 1.0) is w


def test_style_mixing_takes_coarse_from_one_seed_and_fine_from_another(G) -> None:
    schema = tiny_schema()
    cat, cont = _cond(schema, {"grade": "HGG"}, n=2)
    a = case_ws(G, [0, 1], cat, cont)
    b = case_ws(G, [10, 11], cat, cont)
    mixed = case_ws(G, [0, 1], cat, cont, mix_seeds=[10, 11], mix_layer=3)
    assert torch.equal(mixed[:, :3], a[:, :3])
    assert torch.equal(mixed[:, 3:], b[:, 3:])
    assert torch.equal(mix_ws(a, b, 0), b)
    assert torch.equal(mix_ws(a, b, G.num_ws), a)


def test_anatomy_takes_coarse_styles_from_the_same_seed_under_other_conditions(G) -> None:
    schema = tiny_schema()
    ssa = _cond(schema, {"cohort": "SSA", "grade": "HGG"}, n=2)
    gli = _cond(schema, {"cohort": "GLI", "grade": "HGG"}, n=2)
    own, other = case_ws(G, [0, 1], *ssa), case_ws(G, [0, 1], *gli)
    assert not torch.equal(own[:, 0], other[:, 0])  # the cohort moves w
    mixed = case_ws(G, [0, 1], *ssa, anatomy=(gli[0], gli[1], 2))
    assert torch.equal(mixed[:, :2], other[:, :2]) and torch.equal(mixed[:, 2:], own[:, 2:])
    # with style mixing too: coarse from the anatomy, fine from the mix seed (own conditions)
    both = case_ws(G, [0, 1], *ssa, anatomy=(gli[0], gli[1], 2), mix_seeds=[10, 11], mix_layer=4)
    fine = case_ws(G, [10, 11], *ssa)
    assert torch.equal(both[:, :2], other[:, :2]) and torch.equal(both[:, 2:4], own[:, 2:4])
    assert torch.equal(both[:, 4:], fine[:, 4:])
    # truncation pulls each part toward its own condition's mean
    means = ConditionMeans(G, n_samples=64)
    t = case_ws(G, [0, 1], *ssa, psi=0.0, means=means, anatomy=(gli[0], gli[1], 2))
    assert torch.allclose(t[:, 0], means.get_many(torch.as_tensor(gli[0]), torch.as_tensor(gli[1])))
    assert torch.allclose(t[:, -1], means.get_many(torch.as_tensor(ssa[0]), torch.as_tensor(ssa[1])))
    assert anatomy_layer(G) == 2
