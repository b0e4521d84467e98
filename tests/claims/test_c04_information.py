import pytest

from skiplab.claims import Evidence, reproduce, select_claims
from skiplab.store import Store


def test_claim_holds_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C04"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status == "holds", out.reason
        row = store.latest_verdict("C04", "tiny")
        assert row is not None
        num = row.evidence["numbers"]
        # F = 0: the skip keeps I(X; X+N), the plain block nothing
        assert num["residual_zero_closed"] == pytest.approx(num["full_information"], rel=1e-12)
        assert num["plain_zero_closed"] == 0.0
        # a rank-2 branch passes at most a fraction of it without the skip
        assert num["plain_low-rank_closed"] < 0.6 * num["residual_low-rank_closed"]
        assert num["mlp_residual_last"] > 1.2 * num["mlp_plain_last"]
        # every run logs its series: I(X; Y_L) per depth, or the MLP's bound per block
        assert len(row.run_ids) == 3
        assert all(store.metrics(run_id) for run_id in row.run_ids)
        lit = row.evidence["literature"]  # Cover & Thomas, Kraskov et al., He et al. 2016
        assert [c["agrees"] for c in lit] == [True, True, True]
        claim = select_claims("C04")[0]
        figs = claim.report_figures(Evidence.from_dict(row.evidence), tmp_path / "f")
        assert [f.path for f in figs] == ["information.png"]
        assert (tmp_path / "f" / "information.png").stat().st_size > 10_000


def _result(residual_random=3.5, ksg_error=0.0):
    from skiplab.claims.c04_information import SCALES, Block, Mlp, Result

    full = 3.4

    def block(closed, ksg_error=0.0):
        return Block(
            [closed], [closed], [1.0], [1.0 + ksg_error], [0.5], [0.5], [0.1], [[closed, 0.1]]
        )

    res = {"zero": block(full), "low-rank": block(4.0), "random": block(residual_random, ksg_error)}
    plain = {"zero": block(0.0), "low-rank": block(1.2), "random": block(2.0)}
    mlp = {"residual": Mlp([160.0], [107.0], []), "plain": Mlp([140.0], [71.0], [])}
    return Result(SCALES["tiny"], [0], full, {"residual": res, "plain": plain}, mlp)


def test_literature_reports_a_biased_estimator_as_a_disagreement():
    from skiplab.claims.c04_information import Information

    rows = Information().literature(_result(ksg_error=0.5))
    assert rows[1].source.startswith("Kraskov") and rows[1].agrees is False
    assert rows[0].agrees is True  # the closed form is still the Gaussian channel's


def test_criterion():
    from skiplab.claims.c04_information import Information

    claim = Information()
    assert claim.decide(_result()).status == "holds"
    assert claim.decide(_result(residual_random=1.5)).status == "fails"  # plain keeps more
    failed = claim.decide(_result(ksg_error=-0.2))  # KSG off by more than 0.15 nats
    assert failed.status == "fails" and "estimators agree" in failed.reason
