"""Atomic file writes for report folders: re-exported from :mod:`gliomagen.io.atomic`."""

from __future__ import annotations

from gliomagen.io.atomic import clean_json, write_bytes, write_json, write_text

__all__ = ["clean_json", "write_bytes", "write_json", "write_text"]
