"""Fixtures of the generation tests (helpers in ``generation_fixtures``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from generation_fixtures import (
    reference_case,
    save_tiny_checkpoint,
    store_meta,
    tiny_generator,
    tiny_schema,
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def reference_record(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A small BraTS-like case on disk (LPS, 1 mm) whose geometry becomes the template."""
    return reference_case(tmp_path_factory.mktemp("ref"))


@pytest.fixture
def checkpoint(tmp_path: Path, reference_record: Any) -> Path:
    """A real checkpoint file of a tiny untrained generator (16^3) with a store meta."""
    schema = tiny_schema()
    meta = store_meta(reference_record)
    return save_tiny_checkpoint(tmp_path / "run", tiny_generator(schema), schema, meta)
