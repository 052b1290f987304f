"""Generator: grid planning, shapes in 2D/3D, truncation, conditioning, noise, style inputs."""

from __future__ import annotations

import pytest
import torch

from gliomagen.config import preset
from gliomagen.models import build_generator
from gliomagen.models.generator import Generator, plan_grid


@pytest.mark.parametrize(
    ("size", "start", "k"),
    [
        ((32, 32, 32), (4, 4, 4), 3),
        ((128, 128, 128), (4, 4, 4), 5),
        ((256, 256, 256), (4, 4, 4), 6),
        ((96, 112, 96), (6, 7, 6), 4),
        ((16, 16), (4, 4), 2),
        ((80, 96, 112), (5, 6, 7), 4),
    ],
)
def test_plan_grid(size: tuple[int, ...], start: tuple[int, ...], k: int) -> None:
    assert plan_grid(size) == (start, k)


@pytest.mark.parametrize(
    "size", [(100, 100, 100), (8, 8, 8), (512, 512, 512), (32, 32, 32, 32), (18, 18, 18)]
)
def test_plan_grid_rejects(size: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        plan_grid(size)


def tiny(schema, size=(16, 16, 16), style="modulated", **kw) -> Generator:  # noqa: ANN001
    cfg = preset("demo-cpu")
    cfg.model.style, cfg.model.z_dim, cfg.model.w_dim = style, 8, 8
    cfg.model.g_channels, cfg.model.g_max_channels = 4, 8
    for k, v in kw.items():
        setattr(cfg.model, k, v)
    torch.manual_seed(0)
    return build_generator(cfg, schema, size)


@pytest.mark.parametrize("style", ["modulated", "adain"])
@pytest.mark.parametrize("size", [(16, 16, 16), (32, 32), (48, 56, 48)])
def test_forward_shapes_and_range(schema, style: str, size: tuple[int, ...]) -> None:  # noqa: ANN001
    G = tiny(schema, size, style)
    z = torch.randn(2, 8)
    cat, cont = torch.tensor([[0, 1], [1, 3]]), torch.tensor([[0.5], [-1.0]])
    with torch.no_grad():
        img, logits = G(z, cat, cont)
    assert img.shape == (2, 4, *size) and logits.shape == (2, 4, *size)
    assert float(img.abs().max()) <= 1.0 and img.std() > 0.01
    k = plan_grid(size)[1]
    assert G.num_ws == 2 * k + 2


SIZES = [(16, 16, 16), (16, 16)]
"""One 3D and one 2D grid: every module test below runs in both."""


@pytest.mark.parametrize("size", SIZES)
def test_mapping_synthesis_split_and_truncation(schema, size: tuple[int, ...]) -> None:  # noqa: ANN001
    G = tiny(schema, size)
    assert G.synthesis.spatial_dims == len(size)
    z = torch.randn(3, 8)
    cat, cont = torch.tensor([[0, 0]] * 3), torch.zeros(3, 1)
    with torch.no_grad():
        w = G.mapping(z, cat, cont)
        assert w.shape == (3, 8)
        a = G(z, cat, cont, noise_mode="const")
        b = G.synthesis(w.unsqueeze(1).repeat(1, G.num_ws, 1), noise_mode="const")
        torch.testing.assert_close(a[0], b[0])
        centre = w[0]
        img, _ = G(z, cat, cont, truncation_psi=0.0, w_avg=centre, noise_mode="none")
        torch.testing.assert_close(img[1], img[2])  # psi=0: every sample is the centre
        ref, _ = G.synthesis(centre.expand(1, G.num_ws, 8), noise_mode="none")
        torch.testing.assert_close(img[:1], ref)


@pytest.mark.parametrize("size", SIZES)
def test_conditions_change_w_and_bad_inputs_fail(schema, size: tuple[int, ...]) -> None:  # noqa: ANN001
    G = tiny(schema, size)
    z = torch.randn(1, 8).repeat(2, 1)
    with torch.no_grad():
        w = G.mapping(z, torch.tensor([[0, 0], [1, 0]]), torch.zeros(2, 1))
    assert (w[0] - w[1]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="cat must be"):
        G.mapping(torch.randn(1, 8), torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 1))
    with pytest.raises(ValueError, match="ws must be"):
        G.synthesis(torch.randn(1, G.num_ws + 1, 8))


@pytest.mark.parametrize("size", SIZES)
def test_noise_seeds_make_samples_independent_of_batch(schema, size: tuple[int, ...]) -> None:  # noqa: ANN001
    G = tiny(schema, size)
    with torch.no_grad():
        for layer in G.synthesis.layers:
            layer.noise.strength.fill_(0.5)
        ws = torch.randn(3, G.num_ws, 8)
        full, _ = G.synthesis(ws, noise_seeds=[5, 6, 7])
        one, _ = G.synthesis(ws[2:], noise_seeds=[7])
        other, _ = G.synthesis(ws[2:], noise_seeds=[8])
    torch.testing.assert_close(full[2:], one)
    assert (one - other).abs().max() > 1e-4


@pytest.mark.parametrize("size", SIZES)
def test_mask_first_image_head_reads_the_mask(schema, size: tuple[int, ...]) -> None:  # noqa: ANN001
    G = tiny(schema, size, mask_first=True)
    head = G.synthesis.heads[-1]
    assert (
        head.to_img.weight.shape[1]
        == head.to_mask.weight.shape[0] + G.synthesis.layers[-1].conv.weight.shape[0]
    )
    G2 = tiny(schema, size, mask_first=False)
    assert (
        G2.synthesis.heads[-1].to_img.weight.shape[1]
        == G2.synthesis.layers[-1].conv.weight.shape[0]
    )


def test_demo_cpu_generator_is_small(schema) -> None:  # noqa: ANN001
    G = build_generator(preset("demo-cpu"), schema, (32, 32, 32))
    n = sum(p.numel() for p in G.parameters())
    assert 2e5 < n < 2e6
