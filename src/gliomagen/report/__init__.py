"""The HTML report of an evaluation: figures (matplotlib) and the jinja2 page."""

from __future__ import annotations

from typing import Any


def rebuild(*args: Any, **kwargs: Any) -> Any:
    """Rebuild report(s) from metrics.json (see :func:`gliomagen.report.html.rebuild`)."""
    # imported on use: importing gliomagen.report stays free of jinja2 and matplotlib
    from gliomagen.report.html import rebuild as _rebuild

    return _rebuild(*args, **kwargs)


__all__ = ["rebuild"]
