"""A fake training run folder for the report tests."""

from __future__ import annotations

import json
from pathlib import Path


def write_run(run: Path, steps: int = 30) -> Path:
    """A run folder with TensorBoard scalars (``loss/G``, ``loss/D``) and a JSON-lines metrics file."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(run / "tensorboard"))
    for step in range(steps):
        writer.add_scalar("loss/G", 1.0 / (step + 1), step)
        writer.add_scalar("loss/D", 0.5 + 0.01 * step, step)
    writer.close()
    with open(run / "metrics.jsonl", "w") as fh:
        for step in range(0, steps, 10):
            fh.write(
                json.dumps({"step": step, "fd_probe": 100.0 - step, "note": "text is ignored"})
                + "\n"
            )
        fh.write("not json\n")
    return run
