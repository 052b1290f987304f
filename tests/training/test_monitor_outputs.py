"""What a run shows: the sample montage (labels, report colours, legend) and TensorBoard (images,
the configuration, hyperparameters, a resume without duplicate points)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gliomagen.evaluation.montages import MASK_COLOURS
from gliomagen.training import train
from gliomagen.training.monitor import (
    FONT_SIZE,
    RunMonitor,
    changed_hparams,
    montage_figure,
)


def _samples(n: int = 3, size: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.rand(n, 4, size, size, size) * 2 - 1
    logits = torch.zeros(n, 4, size, size, size)
    for label in range(4):  # one band of every label across the middle slice
        logits[:, label, label * 3 : label * 3 + 3] = 5.0
    return images, logits


def _accumulator(folder: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_montage_legend_names_the_mask_labels_in_the_report_colours() -> None:
    images, logits = _samples()
    labels = ["grade=HGG hemisphere=bilateral", "grade=LGG hemisphere=left", "grade=HGG"]
    fig = montage_figure(7, images, logits, labels)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["NCR", "ED", "ET"]
    colours = [h.get_facecolor()[:3] for h in legend.legend_handles]
    np.testing.assert_allclose(colours, np.asarray(MASK_COLOURS) / 255.0)
    # the mask panels: background black, labels 1-3 in the same colours
    mask_panel = np.asarray(fig.axes[4].get_images()[0].get_array())
    seen = {tuple(np.round(c, 4)) for c in mask_panel.reshape(-1, 3)}
    palette = np.vstack([np.zeros((1, 3)), np.asarray(MASK_COLOURS) / 255.0])
    assert seen == {tuple(np.round(c, 4)) for c in palette}


def test_montage_text_is_readable_and_overlaps_nothing() -> None:
    images, logits = _samples()
    labels = ["grade=HGG hemisphere=bilateral", "grade=LGG hemisphere=left", "grade=HGG"]
    fig = montage_figure(7, images, logits, labels)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    page = fig.bbox
    panels = [ax.get_window_extent(renderer) for ax in fig.axes]
    row_labels = [ax.yaxis.label for ax in fig.axes[::5]]
    assert [t.get_text().replace("\n", " ") for t in row_labels] == labels
    titles = [ax.title for ax in fig.axes[:5]]
    assert [t.get_text() for t in titles] == ["t1n", "t1c", "t2w", "t2f", "mask"]
    texts = [fig._suptitle, *titles, *row_labels]
    assert min(t.get_fontsize() for t in texts) >= FONT_SIZE >= 10
    boxes = [t.get_window_extent(renderer) for t in texts]
    for i, box in enumerate(boxes):  # inside the page, clear of every panel and other text
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1
        assert not any(box.overlaps(p) for p in panels), texts[i].get_text()
        assert not any(box.overlaps(b) for b in boxes[i + 1 :]), texts[i].get_text()
    legend = fig.legends[0].get_window_extent(renderer)
    assert not any(legend.overlaps(p) for p in panels) and page.y0 <= legend.y0


def test_tensorboard_holds_the_montage_the_config_and_the_hparams(tmp_path: Path, tiny_cfg) -> None:  # noqa: ANN001
    from tensorboard.plugins.hparams import plugin_data_pb2

    cfg = tiny_cfg(train={"steps": 9})
    monitor = RunMonitor(tmp_path)
    monitor.open(cfg)
    images, logits = _samples(2)
    monitor.scalars(3, {"loss/G/adv": 1.0, "val/fd": 5.0, "val/seconds": 1.0})
    png = monitor.montage(3, images, logits, ["a", "b"])
    monitor.scalars(6, {"val/fd": 4.0, "val/seconds": 1.0})
    monitor.close()
    assert png is not None and png.is_file()

    acc = _accumulator(tmp_path / "tensorboard")
    (image,) = acc.Images("samples")
    assert image.step == 3 and image.encoded_image_string.startswith(b"\x89PNG")
    (text,) = acc.Tensors("config/text_summary")
    assert "steps: 9" in text.tensor_proto.string_val[0].decode()
    data = {}
    for tag in ("_hparams_/experiment", "_hparams_/session_start_info"):
        content = acc.SummaryMetadata(tag).plugin_data.content
        data[tag] = plugin_data_pb2.HParamsPluginData.FromString(content)
    experiment = data["_hparams_/experiment"].experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["val/fd"]
    hparams = data["_hparams_/session_start_info"].session_start_info.hparams
    assert set(hparams) == set(changed_hparams(cfg))
    assert {"preset", "train.steps", "model.z_dim"} <= set(hparams)
    assert hparams["preset"].string_value == "demo-cpu"
    assert hparams["train.steps"].number_value == 9
    assert "train.seed" not in hparams  # as in the preset
    assert [s.value for s in acc.Scalars("val/fd")] == [5.0, 4.0]  # the metric's own points


class Killed(Exception):
    pass


def test_a_resumed_run_has_no_duplicate_points(tmp_path: Path, fake_store, tiny_cfg) -> None:  # noqa: ANN001
    cfg = tiny_cfg(train={"steps": 6, "checkpoint_every": 3, "sample_every": 2})
    store, run = fake_store(n=4), tmp_path / "run"

    def kill_at_5(step: int) -> None:
        if step == 5:  # the last checkpoint is step 3; the points of steps 4-5 are written again
            raise Killed

    with pytest.raises(Killed):
        train(cfg, store, run, callback=kill_at_5, progress=False)
    train(cfg, store, run, resume=True, progress=False)

    acc = _accumulator(run / "tensorboard")
    assert [e.step for e in acc.Scalars("loss/G/adv")] == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in acc.Images("samples")] == [2, 4, 6]
    assert len(list((run / "tensorboard").glob("events.*"))) == 2
