"""The example claim runs on the runner, in process and in a worker pool."""

import pytest

from skiplab.claims import LocalExecutor, reproduce, select_claims
from skiplab.claims._base import _CLAIMS
from skiplab.store import Store


@pytest.fixture
def example_claim(monkeypatch):
    import examples.my_claim as module

    monkeypatch.setitem(_CLAIMS, "X10", module.DeepResidualMLP)
    return module


def test_the_example_claim_runs_and_decides_from_its_interval(example_claim, tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("X10"), scale="tiny", store=store, seeds=3,
                           workdir=tmp_path / "w", executor=LocalExecutor(2))  # fmt: skip
        row = store.latest_verdict("X10", "tiny")
        assert row is not None and out.executed == 6
        gap = row.evidence["summary"]["gap"]
        assert gap["n"] == 3 and gap["mean"] > 0  # the plain 16-layer MLP trains worse
        assert out.status in ("holds", "inconclusive"), out.reason
