"""One exception type for problems the user can fix.

The CLI turns a :class:`GliomagenError` into one line on stderr and exit code 2. Messages name
the file, case or option at fault and say what is wrong, e.g.
``BraTS2021_00001/BraTS2021_00001_seg.nii.gz: unknown label values [5, 7]``.
"""

from __future__ import annotations


class GliomagenError(Exception):
    """A user-facing error: bad input, bad option, bad file. Exit code 2 from the CLI."""

    exit_code = 2
