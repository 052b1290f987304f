"""``gliomagen bench``: end to end at 16^3, FLOP counting, the naive reference, the LDM, errors.

No timed assertions: figures are only checked to exist and be positive.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from gliomagen.bench.ldm import build_ldm, time_ldm
from gliomagen.bench.memory import measure_phases
from gliomagen.bench.naive import NaiveDiscriminator, NaiveGenerator, naive_widths
from gliomagen.bench.report import END, START, rows, targets
from gliomagen.bench.timing import count_flops
from gliomagen.bench.workloads import SCHEMA, bench_config
from gliomagen.cli import app
from gliomagen.models import build_discriminator, build_generator
from gliomagen.models.generator import StyledLayer
from gliomagen.models.layers import EqualConv

runner = CliRunner()


def test_bench_runs_end_to_end_at_16(tmp_path: Path) -> None:
    md = tmp_path / "perf.md"
    md.write_text(f"# Title\n\nintro kept\n\n{START}\nold table\n{END}\n\ntail kept\n")
    out = tmp_path / "bench.json"
    res = runner.invoke(app, [
        "bench", "--presets", "demo-cpu", "--sizes", "16", "--skip-ldm", "--skip-memory",
        "--in-process", "--steps", "1", "--repeats", "1", "--threads", "1",
        "--out", str(out), "--markdown", str(md),
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    kinds = sorted(r["kind"] for r in doc["results"])
    assert kinds == ["generate", "naive_generate", "naive_train", "train"]
    assert not [r for r in doc["results"] if "error" in r]
    by = {r["kind"]: r for r in doc["results"]}
    assert by["train"]["volumes_per_s"] > 0 and by["train"]["flops_per_step"] > 1e8
    assert by["train"]["peak_rss_mb"] > 50
    assert by["generate"]["s_per_volume"] > 0 and by["generate"]["flops_per_volume"] > 1e6
    # the naive design convolves at the fine grid: more FLOPs than gliomagen's at the same widths
    assert by["naive_train"]["flops_per_step"] > by["train"]["flops_per_step"]
    assert doc["peaks"]["conv3d"]["flop_per_s"] > 0 and doc["peaks"]["matmul"]["flop_per_s"] > 0
    (row,) = rows(doc)
    assert row["train_speedup"] == pytest.approx(
        by["train"]["volumes_per_s"] / by["naive_train"]["volumes_per_s"]
    )
    assert targets(doc) == {}  # the targets are about origin/small-data at 64/128
    text = md.read_text()
    assert text.startswith("# Title\n\nintro kept") and text.rstrip().endswith("tail kept")
    assert "old table" not in text and "| demo-cpu | 16^3 |" in text
    assert "gliomagen bench --presets demo-cpu --sizes 16" in text
    assert "demo-cpu" in res.output and "x naive" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sizes", "100"], "--sizes 100"),
        (["--sizes", "abc"], "--sizes 'abc'"),
        (["--presets", "nope"], "--presets 'nope'"),
        (["--device", "tpu"], "--device 'tpu'"),
        (["--steps", "0"], "--steps 0"),
    ],
)
def test_bench_rejects_bad_options(args: list[str], message: str, tmp_path: Path) -> None:
    res = runner.invoke(app, ["bench", *args, "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 2
    assert message in res.output and res.output.count("\n") == 1
    assert not (tmp_path / "x.json").exists()


def test_flop_counter_gives_the_analytic_count_of_one_conv() -> None:
    n, cin, cout, s = 2, 3, 5, 6
    x, w = torch.randn(n, cin, s, s, s), torch.randn(cout, cin, 3, 3, 3)
    assert count_flops(lambda: F.conv3d(x, w, padding=1)) == 2 * n * cout * cin * 27 * s**3
    # a 1x1 EqualConv on the CPU layout is a batched product: same count as the convolution
    conv = EqualConv(cin, cout, 1)
    xc = x.contiguous(memory_format=torch.channels_last_3d)
    assert count_flops(lambda: conv(xc)) == 2 * n * cout * cin * s**3
    # forward + backward of a conv: 3x the forward (input and weight gradients)
    xr = x.clone().requires_grad_()
    wr = w.clone().requires_grad_()
    assert count_flops(lambda: F.conv3d(xr, wr, padding=1).sum().backward()) == 3 * 2 * n * cout * cin * 27 * s**3
    # a grouped conv (the fused modulated conv): torch 2.13 counts its weight gradient `groups`
    # times; gliomagen's count_flops counts it once, as for the same convs run one by one
    xg = torch.randn(1, n * cin, s, s, s, requires_grad=True)
    wg = torch.randn(n * cout, cin, 3, 3, 3, requires_grad=True)
    fwd = count_flops(lambda: F.conv3d(xg, wg, padding=1, groups=n))
    assert fwd == 2 * n * cout * cin * 27 * s**3
    assert count_flops(lambda: F.conv3d(xg, wg, padding=1, groups=n).sum().backward()) == 3 * fwd


@pytest.mark.parametrize("preset", ["origin", "small-data", "demo-cpu"])
def test_naive_model_has_the_presets_widths(preset: str) -> None:
    cfg = bench_config(preset, 32, 2)
    m = cfg.model
    G = build_generator(cfg, SCHEMA, (32, 32, 32))
    D = build_discriminator(cfg, SCHEMA, (32, 32, 32))
    ours_g = [layer.conv.weight.shape[0] for layer in G.synthesis.layers if isinstance(layer, StyledLayer)]
    nG = NaiveGenerator(32, m.g_channels, m.g_max_channels, m.z_dim, m.w_dim, [3, 3], m.mapping_layers)
    assert [b.conv.out_channels for b in nG.blocks] == ours_g
    assert nG.widths == naive_widths(32, m.g_channels, m.g_max_channels)
    nD = NaiveDiscriminator(32, m.d_channels, m.d_max_channels, [3, 3])
    ours_d = [D.from_input.weight.shape[0]] + [blk.conv1.weight.shape[0] for blk in D.blocks]
    if m.d_stem == "conv":
        assert nD.widths == ours_d
    else:  # space_to_depth starts D's blocks at half the grid: the naive D has one level more
        assert nD.widths[1:] == ours_d
    img, logits = nG(torch.randn(2, m.z_dim), torch.tensor([[0, 1], [1, 0]]))
    assert img.shape == logits.shape == (2, 4, 32, 32, 32)
    assert nD(img, logits.softmax(1), torch.tensor([[0, 1], [1, 0]])).shape == (2,)


def test_ldm_reference_builds_and_samples_at_a_tiny_size() -> None:
    t0 = time.perf_counter()
    ae, unet = build_ldm(torch.device("cpu"))
    assert ae.decoder is not None and sum(p.numel() for p in unet.parameters()) > 1e6
    res = time_ldm(16, torch.device("cpu"), ddim_steps=2, ddpm_timed_steps=1)
    assert res["latent"] == [3, 4, 4, 4]
    assert res["ddim_s"] > 0 and res["ddpm_1000_s"] > res["unet_step_s"] * 999
    assert res["unet_step_flops"] > 0 and res["decode_flops"] > 0
    assert time.perf_counter() - t0 < 60


def test_memory_measurement_sees_less_with_activation_checkpointing() -> None:
    plain = measure_phases("demo-cpu", 16, checkpointing=False)
    ckpt = measure_phases("demo-cpu", 16, checkpointing=True)
    for phase in ("G", "D"):
        assert 0 < ckpt[f"{phase}_saved_bytes"] < plain[f"{phase}_saved_bytes"]
    assert plain["params"] == ckpt["params"] > 1e5
