"""C16 at tiny scale: spectra over token positions, gradient split and warm-up runs."""

import math

from skiplab.claims import Evidence, Verdict, reproduce, select_claims
from skiplab.claims.c16_transformer_lowpass import SCALES, Result, TransformerLowpass
from skiplab.diagnostics.token_spectrum import TokenSpectra
from skiplab.store import Store


def _spectra(low_stream: float, low_branch: float) -> TokenSpectra:
    return TokenSpectra(
        names=["blocks.0.attn"], length=40, stream=[[1.0]], branch=[[1.0]],
        low_stream=[low_stream], low_branch=[low_branch], low_stream_ac=[0.5],
        low_branch_ac=[0.5], grad_skip=[1.0], grad_branch=[1.0],
    )  # fmt: skip


def _verdict(stream: list[float], branch: list[float]) -> str:
    probes = [_spectra(s, b) for s, b in zip(stream, branch)]
    r = Result(
        init=probes, trained=probes, test_acc=[0.5] * len(probes),
        no_warmup={"post_ln": [0.3], "pre_ln": [0.4]}, with_warmup={"post_ln": [0.5], "pre_ln": [0.5]},
        grad_init={}, settings=SCALES["tiny"], seeds=list(range(len(probes))),
    )  # fmt: skip
    claim = TransformerLowpass()
    return Verdict.from_checks(claim.checks(r), claim.detail(r)).status


def test_criterion_compares_the_ranges_over_seeds():
    assert _verdict([0.8, 0.7], [0.5, 0.6]) == "holds"
    assert _verdict([0.6, 0.5], [0.99, 0.95]) == "fails"
    assert _verdict([0.8, 0.5], [0.6, 0.7]) == "inconclusive"


def test_c16_tiny_attention_averages_at_init(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (claim,) = select_claims("C16")
        (outcome,) = reproduce([claim], scale="tiny", store=store, workdir=tmp_path)
        assert outcome.status in ("holds", "fails", "inconclusive"), outcome.reason
        row = store.latest_verdict("C16", "tiny")
        assert row is not None
        ev = Evidence.from_dict(row.evidence)
        # at init (N(0, 0.02) weights) attention is near-uniform: its output is close to the mean
        # over positions, almost pure DC, while the stream holds the varying signal
        assert ev.numbers["low_branch_init"] > 0.9 > ev.numbers["low_stream_init"]
        r = Result.from_json(ev.summary)
        (trained,) = r.trained
        assert trained.names == ["blocks.0.attn", "blocks.1.attn"]
        assert all(g > 0 for g in trained.grad_skip + trained.grad_branch)
        for cells in (r.no_warmup, r.with_warmup):  # post-LN and pre-LN, with and without warm-up
            assert set(cells) == {"post_ln", "pre_ln"}
            assert all(len(v) == 1 and math.isfinite(v[0]) for v in cells.values())
        assert set(r.grad_init) == {"post_ln", "pre_ln"}
        assert len(row.run_ids) == 5
        assert all(store.metrics(i) for i in row.run_ids)
        figs = claim.report_figures(ev, tmp_path / "f")
        assert [f.path for f in figs] == ["transformer_lowpass.png"]
        assert (tmp_path / "f" / figs[0].path).stat().st_size > 10_000
