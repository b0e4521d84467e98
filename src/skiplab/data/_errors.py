"""The error every ``skiplab.data`` loader raises for a bad or missing data file."""

from __future__ import annotations

__all__ = ["DataError", "DatasetOptionError"]


class DataError(ValueError):
    """A data file is missing, corrupt or not in the expected format.

    The message always names the file and what is wrong with it (expected vs found checksum,
    the missing key, the bad shape), so a user can fix the file rather than the code. It
    subclasses ``ValueError`` because the file is, in effect, a bad argument.
    """


class DatasetOptionError(ValueError):
    """A loader was given an option it does not take (``root`` for a generated dataset).

    Attributes:
        dataset: the dataset's name.
        options: the options it does not take.
    """

    def __init__(self, dataset: str, options: list[str], accepted: list[str]) -> None:
        self.dataset = dataset
        self.options = options
        takes = ", ".join(accepted) or "no options"
        super().__init__(
            f"dataset {dataset!r} takes no {', '.join(map(repr, options))} (it takes: {takes})"
        )
