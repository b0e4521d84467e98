"""Fixtures shared by the runner and executor tests."""

import dataclasses

import pytest
import toy_claim
from toy_claim import Settings, ToyClaim

from skiplab.claims._base import _CLAIMS


@pytest.fixture
def toy(monkeypatch):
    """The toy claim in the catalogue for one test; ``toy(**changes)`` replaces its tiny
    settings and returns an instance."""
    monkeypatch.setitem(_CLAIMS, "X01", ToyClaim)

    def with_settings(**changes):
        scales = dict(toy_claim.SCALES, tiny=dataclasses.replace(Settings(), **changes))
        monkeypatch.setattr(ToyClaim, "scales", scales)
        return ToyClaim()

    return with_settings
