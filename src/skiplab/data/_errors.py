"""The error every ``skiplab.data`` loader raises for a bad or missing data file."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """A data file is missing, corrupt or not in the expected format.

    The message always names the file and what is wrong with it (expected vs found checksum,
    the missing key, the bad shape), so a user can fix the file rather than the code. It
    subclasses ``ValueError`` because the file is, in effect, a bad argument.
    """
