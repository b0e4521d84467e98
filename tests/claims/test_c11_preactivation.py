from skiplab.claims import reproduce, select_claims
from skiplab.store import Store


def test_preactivation_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C11"), scale="tiny", store=store, workdir=tmp_path)
        row = store.latest_verdict("C11", "tiny")
        assert all(store.run(r).status == "completed" for r in row.run_ids)
    # one seed cannot separate the training losses: the verdict says so instead of guessing
    assert out.status == "inconclusive" and "one seed" in out.reason
    n = row.evidence["numbers"]
    # the clean identity path at init: the gradient reaching the first block, relative to the
    # last, is larger with pre-activation, and the residual stream's variance grows further
    assert n["pre32_grad_first_over_last"] > 1.5 * n["post32_grad_first_over_last"]
    assert n["pre32_final_var"] > n["post32_final_var"]
    assert set(row.evidence["series"]["losses"]) == {"pre8", "post8", "pre32", "post32"}
