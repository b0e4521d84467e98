import math

from skiplab.claims import Evidence, Verdict, reproduce, select_claims
from skiplab.claims.c17_disulfide_staple import SCALES, DisulfideStaple, Ensemble, Result
from skiplab.store import Store


def _ensemble(seeds, rg_mean, rg_std, end_mean):
    n = len(seeds)
    return Ensemble(seeds, rg_mean, rg_std, end_mean, [0.3] * n, [2.0] * n, [], (0, 0), [])


def _verdict(delta_s, stapled):
    free = _ensemble([0, 1], [4.3, 4.4], [0.7, 0.75], [10.9, 11.2])
    r = Result(SCALES["tiny"], [0, 1], delta_s, 31.3, free, stapled, [], [])
    claim = DisulfideStaple()
    return Verdict.from_checks(claim.checks(r), claim.detail(r))


def test_criterion():
    stapled = _ensemble([0, 1], [2.8, 2.9], [0.17, 0.2], [4.3, 4.5])
    assert _verdict([-7.4, -7.0], stapled).status == "holds"
    assert _verdict([-7.4, -0.5], stapled).status == "fails"  # one seed loses under 1 k_B
    overlap = _ensemble([0, 1], [2.8, 4.35], [0.17, 0.2], [4.3, 4.5])
    assert _verdict([-7.4, -7.0], overlap).status == "fails"  # Rg ranges overlap
    never = _verdict([-7.4, -math.inf], _ensemble([0], [2.8], [0.17], [4.3]))
    assert never.status == "fails" and "reach the staple" in never.reason


def test_claim_holds_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C17"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status == "holds", out.reason
        row = store.latest_verdict("C17", "tiny")
        assert row is not None
        num = row.evidence["numbers"]
        assert num["delta_s"] < -2
        assert num["stapled_rg_std"] < 0.7 * num["free_rg_std"]
        assert num["stapled_end_mean"] < 0.7 * num["free_end_mean"]
        s = SCALES["tiny"]
        for run_id in row.run_ids:  # Rg, end-to-end and pair distance after every sweep
            rows = store.metrics(run_id)
            assert rows and len(rows) == 3 * s.sweeps * (len(s.reaches) + 1)
        (lit,) = row.evidence["literature"]  # a protein is not on the lattice's scale
        assert lit["agrees"] is None and "Zavodszky" in lit["source"]
        assert "kcal/mol" in lit["measured"]
        claim = select_claims("C17")[0]
        figs = claim.report_figures(Evidence.from_dict(row.evidence), tmp_path / "f")
        assert [f.path for f in figs] == ["staple.png"]
        assert (tmp_path / "f" / "staple.png").stat().st_size > 10_000
