"""The HTML report: self-contained, every image a decodable PNG, rebuildable, and rendered by Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from report_metrics import metrics
from report_run_folder import write_run
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.report.html import rebuild, render

PNG = b"\x89PNG\r\n\x1a\n"
IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
SRC = re.compile(r'src="([^"]*)"')


def _images(html: str) -> list[str]:
    tags = IMG.findall(html)
    srcs = [m.group(1) for t in tags if (m := SRC.search(t))]
    assert len(srcs) == len(tags)  # every <img> has a src
    return srcs


def _decode_png(uri: str) -> np.ndarray:
    from matplotlib.image import imread

    assert uri.startswith("data:image/png;base64,"), uri[:40]
    raw = base64.b64decode(uri.split(",", 1)[1], validate=True)
    assert raw[:8] == PNG
    return imread(io.BytesIO(raw), format="png")


def test_report_is_self_contained_and_every_image_is_a_png(
    evaluated: tuple[Path, Path, dict[str, Any]],
) -> None:
    out, _, metrics = evaluated
    html = (out / "index.html").read_text(encoding="utf-8")
    srcs = _images(html)
    # distances, diversity, memorisation, 2 mask figures, 5 histogram groups, 10 montages, curves
    assert len(srcs) == 1 + 1 + 1 + 2 + 5 + 10 + 1
    for uri in srcs:
        pixels = _decode_png(uri)
        assert pixels.shape[0] > 50 and pixels.shape[1] > 50 and float(np.std(pixels)) > 0.01
    assert not re.search(r"(?:href|src)=\"(?!data:|#)", html)  # no external resources
    assert "<script" not in html.lower() and "<link" not in html.lower()
    for section in (
        "distances",
        "diversity",
        "memorisation",
        "fidelity",
        "masks",
        "intensity",
        "montages",
        "curves",
    ):
        assert f'id="{section}"' in html
    fd = metrics["distances"]["all"]["synthetic"]["fd"]
    assert f"{fd['value']:.3f}" in html and f"{fd['ci'][0]:.3f}" in html
    for case in metrics["memorisation"]["cases"]:
        assert case["case_id"] in html


def test_report_command_rebuilds_the_same_page(
    evaluated: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, _, _ = evaluated
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    original = (copy / "index.html").read_text(encoding="utf-8")
    (copy / "index.html").unlink()
    res = CliRunner().invoke(app, ["report", str(copy)])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == str(copy / "index.html")
    assert (copy / "index.html").read_text(encoding="utf-8") == original


def test_report_of_a_run_folder_picks_up_new_curves(
    evaluated: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, run, _ = evaluated
    new_run = tmp_path / "run"
    shutil.copytree(run, new_run)
    write_run(new_run / "more", steps=12)  # a later training phase logs more scalars
    (new_run / "more" / "metrics.jsonl").rename(new_run / "phase2.jsonl")
    pages = rebuild(new_run)
    assert pages == [new_run / "report" / "index.html"]
    metrics = json.loads((new_run / "report" / "metrics.json").read_text())
    assert "phase2/fd_probe" in metrics["curves"]["series"]
    assert metrics["curves"]["run"] == str(new_run.resolve())


def test_curves_only_report_for_a_run_without_evaluation(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    run = write_run(tmp_path / "run")
    pages = rebuild(run)
    assert pages == [run / "report" / "index.html"]
    html = pages[0].read_text(encoding="utf-8")
    assert len(_images(html)) == 1 and 'id="curves"' in html and 'id="distances"' not in html


def test_render_without_optional_sections() -> None:
    html = render({"format_version": 1}, Path("."))
    assert "<h1>gliomagen evaluation report</h1>" in html and not _images(html)


CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
CHECK = (
    "<script>window.addEventListener('load',()=>{const ok=[...document.images].map("
    "i=>i.complete&&i.naturalWidth>0?'1':'0').join('');"
    "document.body.setAttribute('data-images',ok);"
    "const e=document.documentElement;document.body.setAttribute('data-wide',"
    "e.scrollWidth>e.clientWidth?'1':'0');});</script>"
)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium")
def test_report_renders_in_headless_chromium(
    evaluated: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, _, _ = evaluated
    html = (out / "index.html").read_text(encoding="utf-8")
    n_images = len(_images(html))
    # a copy with a load-time check: every <img> decoded (complete, with a width)
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", CHECK + "</body>"), encoding="utf-8")

    def chromium(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip

    dom = chromium(
        "--window-size=1280,2000", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    flags = re.search(r'data-images="([01]*)"', dom.stdout)
    assert flags is not None, dom.stdout[:500]
    assert flags.group(1) == "1" * n_images
    assert 'data-wide="0"' in dom.stdout  # wide tables scroll in their box; the page does not
    assert "Feature distances" in dom.stdout and "Memorisation audit" in dom.stdout

    shot = tmp_path / "shot.png"
    res = chromium("--window-size=1280,2000", f"--screenshot={shot}", (out / "index.html").as_uri())
    assert res.returncode == 0 and shot.read_bytes()[:8] == PNG
    from matplotlib.image import imread

    pixels = imread(str(shot))
    assert pixels.shape[:2] == (2000, 1280) and float(np.std(pixels)) > 0.05  # not a blank page


def test_few_cases_warning_states_the_numbers() -> None:
    few = render(metrics(n=3), Path("."))
    assert 'class="warn"' in few and "Too few cases" in few
    assert "3 held-out real and 3 synthetic cases" in few and "fewer than 10" in few
    many = render(metrics(n=20), Path("."))
    assert 'class="warn"' not in many and "Too few cases" not in many


def test_kid_header_states_its_scale_and_negative_kid_is_explained() -> None:
    html = render(metrics(kid=0.0042), Path("."))
    assert "<th>KID x 1000 synthetic</th>" in html and "<th>KID x 1000 floor</th>" in html
    assert "4.200 [3.360, 5.040]" in html  # 0.0042 shown times 1000, interval too
    assert "can be slightly negative when the two sets are alike" in html
    assert "-2.000" in render(metrics(kid=-0.002), Path("."))


def test_sections_with_nothing_to_show_have_no_empty_heading() -> None:
    m = metrics()
    m["memorisation"]["cases"] = []
    m["reconstruction"] = {"space": "w", "steps": 10, "cases": [], "mean": {}}
    m["curves"] = {"run": "RUN", "series": {}}
    m["montages"] = {"all": {"real": "figures/missing.png", "synthetic": "figures/missing2.png"}}
    html = render(m, Path("."))
    for section in ("memorisation", "reconstruction", "curves"):
        assert f'<h2 id="{section}">' not in html
        assert f'<details id="{section}">' in html
    assert 'id="montages"' not in html
    # every heading is followed by something other than another heading or the page's end
    assert not re.search(r"</h[23]>\s*(?:<h[123]\b|<details|</body>)", html)


def test_every_table_scrolls_in_its_own_box() -> None:
    html = render(metrics(), Path("."))
    tables = html.count("<table>")
    assert tables >= 5 and html.count('<div class="scroll"><table>') == tables
    assert ".scroll{overflow-x:auto" in html
