"""The hierarchical generator and discriminator: boxes equal the tiled whole, the low-resolution
path is the plain synthesis network, field noise agrees across boxes."""

from __future__ import annotations

import pytest
import torch

from gliomagen.config import Config
from gliomagen.data.conditions import ConditionSchema
from gliomagen.models import build_discriminator, build_generator
from gliomagen.models.field_noise import field_noise
from gliomagen.models.generator import SynthesisNetwork
from gliomagen.models.hierarchical import HierarchicalSynthesis, blend_window, halo, tile_corners
from gliomagen.models.hierarchical_d import coordinate_channels


def _synth(size: int, low: int, sub: int, seed: int = 0) -> HierarchicalSynthesis:
    torch.manual_seed(seed)
    net = HierarchicalSynthesis((size,) * 3, low, sub, w_dim=8, channels=2, max_channels=8)
    with torch.no_grad():  # non-zero noise strengths: the noise must agree across boxes too
        for name, p in net.named_parameters():
            if name.endswith("strength"):
                p.uniform_(0.5, 1.0)
    return net.eval()


def test_field_noise_boxes_agree_and_are_standard_normal() -> None:
    seeds = torch.tensor([3, 2**40 + 5])
    whole = field_noise(seeds, 4, (0, 0, 0), (16, 16, 16))
    box = field_noise(seeds, 4, (5, 0, 9), (6, 16, 7))
    assert torch.equal(box, whole[:, :, 5:11, :, 9:16])
    assert not torch.equal(whole[0], whole[1])  # per-sample fields
    assert not torch.equal(whole, field_noise(seeds, 5, (0, 0, 0), (16, 16, 16)))  # per layer
    assert abs(float(whole.mean())) < 0.05 and abs(float(whole.std()) - 1.0) < 0.05


def test_halo_values() -> None:
    assert [halo(levels) for levels in (1, 2, 3, 4)] == [2, 3, 4, 4]


@pytest.mark.parametrize(
    ("size", "low", "sub", "corner"),
    [(32, 16, 16, (16, 0, 8)), (64, 16, 16, (16, 32, 24)), (128, 16, 16, (32, 64, 48))],
)
def test_sub_volume_equals_the_whole_rendering(
    size: int, low: int, sub: int, corner: tuple[int, ...]
) -> None:
    """A sub-volume equals the same region of the branch run on the whole low-res grid and of the
    tiled rendering (one to three doublings; interior boxes, so the halo and its trimming after
    each level are exercised)."""
    net = _synth(size, low, sub)
    ws = torch.randn(2, net.num_ws, 8)
    seeds = torch.tensor([11, 12])
    with torch.no_grad():
        feats = net.low_features(ws, "random", seeds)
        whole_img, whole_raw = net.render_box(ws, feats, (0, 0, 0), size, seeds)
        sub_img, sub_raw = net.render_box(ws, feats, corner, sub, seeds)
        tiled_img, tiled_logits = net(ws, "random", seeds, tile=sub)
    box = (slice(None), slice(None), *(slice(c, c + sub) for c in corner))
    torch.testing.assert_close(sub_img, whole_img[box], atol=1e-5, rtol=0)
    torch.testing.assert_close(sub_raw, whole_raw[box], atol=1e-5, rtol=0)
    img, logits = net.sub_volume_output(ws, feats, corner, seeds)
    torch.testing.assert_close(img, tiled_img[box], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, tiled_logits[box], atol=1e-5, rtol=0)
    assert tiled_img.shape == (2, 4, size, size, size) and float(tiled_img.abs().max()) <= 1.0


def test_sub_volume_on_a_tile_matches_exactly_where_its_weight_is_one() -> None:
    net = _synth(32, 16, 16)
    ws = torch.randn(1, net.num_ws, 8)
    with torch.no_grad():
        img, logits = net(ws, "const", tile=16, overlap=4)
        feats = net.low_features(ws, "const")
        sub_img, sub_logits = net.sub_volume_output(
            ws, feats, (0, 0, 0), net.branch_seeds(1, "const", None)
        )
    # tiles at 0, 12 and 16 per axis (tile 16, overlap 4): [0, 12)^3 is covered by the tile at
    # the origin alone, with weight 1, so there the rendering is that tile's output, bit for bit
    assert tile_corners(32, 16, 4, 2) == [0, 12, 16]
    inner = (slice(None), slice(None), slice(0, 12), slice(0, 12), slice(0, 12))
    assert torch.equal(sub_img[inner], img[inner])
    assert torch.equal(sub_logits[inner], logits[inner])


def test_inference_renders_whole_up_to_128_and_abutting_tiles_beyond() -> None:
    net = _synth(32, 16, 16)
    assert net.tile == 32 and [c for c, _ in net.tiles()] == [(0, 0, 0)]
    assert [c for c, _ in net.tiles(16)] == [(a, b, c) for a in (0, 16) for b in (0, 16) for c in (0, 16)]
    assert all(torch.all(w == 1) for _, w in net.tiles(16))  # abutting: nothing to blend
    assert len(list(net.tiles(16, overlap=4))) == 27  # [0, 12, 16] per axis
    big = HierarchicalSynthesis((256,) * 3, 32, 32, w_dim=8, channels=1, max_channels=2)
    assert big.tile == 128 and len(list(big.tiles())) == 8
    ws = torch.randn(1, net.num_ws, 8)
    with torch.no_grad():
        whole = net(ws, "random", [3])
        tiled = net(ws, "random", [3], tile=16)
        blended = net(ws, "random", [3], tile=16, overlap=4)
    for a, b, c in zip(whole, tiled, blended, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        torch.testing.assert_close(a, c, atol=1e-5, rtol=0)


def test_low_res_output_is_the_plain_synthesis_network() -> None:
    net = _synth(32, 16, 16)
    plain = SynthesisNetwork((16, 16, 16), 8, channels=4, max_channels=8).eval()
    plain.load_state_dict(net.low.state_dict())
    ws = torch.randn(2, net.num_ws, 8)
    with torch.no_grad():
        low = net.low_output(net.low_features(ws, "random", [1, 2]))
        ref = plain(ws[:, : plain.num_ws], "random", [1, 2])
    assert torch.equal(low[0], ref[0]) and torch.equal(low[1], ref[1])


def test_noise_modes_and_determinism() -> None:
    net = _synth(32, 16, 16)
    ws = torch.randn(1, net.num_ws, 8)
    with torch.no_grad():
        a = net(ws, "random", [5])[0]
        b = net(ws, "random", [5])[0]
        c = net(ws, "random", [6])[0]
        d = net(ws, "none")[0]
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, d)


def test_blend_window_ramps_only_where_tiles_overlap() -> None:
    w = blend_window(16, 16, 32, 4)
    assert torch.allclose(w[:4], torch.tensor([0.125, 0.375, 0.625, 0.875], dtype=torch.float64))
    assert torch.all(w[4:] == 1)  # flush with the volume's end
    assert torch.all(blend_window(0, 16, 16, 0) == 1)


def test_coordinate_channels() -> None:
    c = coordinate_channels((0, 16, 8), 16, (32, 32, 32), 2, "cpu")
    assert c.shape == (2, 3, 16, 16, 16)
    assert float(c[0, 0, 0, 0, 0]) == pytest.approx(-1 + 1 / 32)
    assert float(c[0, 1, 0, 0, 0]) == pytest.approx(1 / 32)
    assert float(c[0, 2, 0, 0, -1]) == pytest.approx((23.5 / 32) * 2 - 1)


def test_built_from_the_config(schema: ConditionSchema) -> None:
    cfg = Config()
    m = cfg.model
    m.hierarchical, m.low_res, m.sub_volume = True, 16, 16
    m.z_dim, m.w_dim, m.g_channels, m.g_max_channels, m.d_channels, m.d_max_channels = (
        8,
        8,
        2,
        8,
        2,
        8,
    )
    G = build_generator(cfg, schema, (32, 32, 32)).eval()
    D = build_discriminator(cfg, schema, (32, 32, 32))
    assert isinstance(G.synthesis, HierarchicalSynthesis) and G.num_ws == 2 * 3 + 2
    z = torch.randn(2, 8)
    cat, cont = torch.tensor([[0, 1], [1, 2]]), torch.zeros(2, 1)
    with torch.no_grad():
        img, logits = G(z, cat, cont, noise_mode="const")
        low = G.synthesis.low_output(G.synthesis.low_features(torch.randn(2, G.num_ws, 8), "const"))
        out = D(low[0], torch.softmax(low[1], 1), cat, cont)
        sub = D.judge_sub(
            img[:, :, :16, :16, 16:],
            torch.softmax(logits, 1)[:, :, :16, :16, 16:],
            (0, 0, 16),
            cat,
            cont,
        )
    assert img.shape == (2, 4, 32, 32, 32) and logits.shape == (2, 4, 32, 32, 32)
    assert out.score.shape == (2,) and sub.score.shape == (2,) and len(sub.cat_logits) == 0
    assert torch.isfinite(out.score).all() and torch.isfinite(sub.score).all()
