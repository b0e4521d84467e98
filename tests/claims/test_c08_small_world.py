from skiplab.claims import Evidence, reproduce, select_claims
from skiplab.store import Store


def test_small_world_holds_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C08"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status == "holds", out.reason
        row = store.latest_verdict("C08", "tiny")
        assert row is not None
        n = row.evidence["numbers"]
        assert len(row.run_ids) == 4  # chain, chain + shortcut, plain-20, ResNet-20
        assert all(store.run(r).status == "completed" for r in row.run_ids)
        assert all(store.metrics(r) for r in row.run_ids)  # every run logged its series
        lit = row.evidence["literature"]  # Watts & Strogatz 1998, Veit et al. 2016
        assert [c["agrees"] for c in lit] == [True, True] and "2^9" in lit[1]["measured"]
        figs = select_claims("C08")[0].report_figures(
            Evidence.from_dict(row.evidence), tmp_path / "f"
        )
    assert [f.path for f in figs] == ["paths.png"]
    assert (tmp_path / "f" / "paths.png").stat().st_size > 10_000
    assert (n["chain_diameter"], n["shortcut_diameter"]) == (100.0, 50.0)
    assert (n["chain_average"], n["shortcut_average"]) == (34.0, 25.5)
    # ResNet-20: 9 blocks -> 2^9 paths of 2 + 2k layers; plain-20: one path of 20 layers
    assert n["resnet20_paths_total"] == 512 and n["plain20_paths_total"] == 1
    assert n["resnet20_paths_longest"] == n["plain20_paths_longest"] == 20
    assert n["resnet20_paths_mean"] == 11.0 and n["resnet20_binomial_maxdiff"] < 1e-12
