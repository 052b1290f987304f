"""The run folder: nothing written before the checks pass; a run that fails before its first step
leaves no folder it created; the temporary files of a killed run are cleared on the next start."""

from __future__ import annotations

from pathlib import Path

import pytest

from gliomagen.errors import GliomagenError
from gliomagen.io.checkpoint import list_checkpoints
from gliomagen.training import train
from gliomagen.training.loop import Trainer


class Boom(Exception):
    pass


def test_a_failed_check_leaves_no_new_folder(tmp_path: Path, fake_store, tiny_cfg) -> None:  # noqa: ANN001
    run = tmp_path / "new" / "run"
    with pytest.raises(GliomagenError, match="validation reads the val split of a store folder"):
        train(tiny_cfg(train={"val_every": 1}), fake_store(n=4), run, progress=False)
    assert not (tmp_path / "new").exists()


def test_a_failure_in_the_first_step_leaves_no_new_folder(
    tmp_path: Path, fake_store, tiny_cfg, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    def boom(self: Trainer, items: object) -> dict:
        raise Boom

    monkeypatch.setattr(Trainer, "_train_step", boom)
    run = tmp_path / "new" / "run"
    with pytest.raises(Boom):
        train(tiny_cfg(), fake_store(n=4), run, progress=False)
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"  # an existing folder is never removed
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(Boom):
        train(tiny_cfg(), fake_store(n=4), mine, progress=False)
    assert (mine / "notes.txt").read_text() == "mine"


def test_a_failure_after_a_step_keeps_the_folder(tmp_path: Path, fake_store, tiny_cfg) -> None:  # noqa: ANN001
    def stop(step: int) -> None:
        raise Boom

    run = tmp_path / "new" / "run"
    with pytest.raises(Boom):
        train(tiny_cfg(), fake_store(n=4), run, callback=stop, progress=False)
    assert "step 1 " in (run / "log.txt").read_text()


def test_partial_writes_of_a_killed_run_are_cleared(tmp_path: Path, fake_store, tiny_cfg) -> None:  # noqa: ANN001
    run = tmp_path / "run"
    store = fake_store(n=4)
    train(tiny_cfg(train={"steps": 2, "checkpoint_every": 1}), store, run, progress=False)
    partial = [
        run / "checkpoints" / ".step-0000003.pt.k1ll3d.tmp",
        run / ".config.yaml.k1ll3d.tmp",
        run / "samples" / ".step-0000003.png.k1ll3d.tmp",
    ]
    for p in partial:
        p.write_bytes(b"half")
    (run / "checkpoints" / "notes.tmp").write_text("not ours: no leading dot")
    train(tiny_cfg(train={"steps": 3, "checkpoint_every": 1}), store, run, resume=True,
          progress=False)  # fmt: skip
    assert not any(p.exists() for p in partial)
    assert (run / "checkpoints" / "notes.tmp").exists()
    assert [p.name for p in list_checkpoints(run)][-1] == "step-0000003.pt"
