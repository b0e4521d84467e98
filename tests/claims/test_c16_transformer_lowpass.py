"""C16: spectra over token positions in two settings, Park & Kim's measure, the warm-up test."""

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from skiplab.claims import Evidence, Verdict, reproduce, select_claims
from skiplab.claims.c16_transformer_lowpass import (
    SCALES,
    Result,
    Setting,
    TransformerLowpass,
    patches,
    xavier_init,
)
from skiplab.data import Splits
from skiplab.diagnostics.token_spectrum import TokenSpectra
from skiplab.store import Store


def _spectra(
    stream: float, branch: float, hf_attn: float = -1.0, hf_mlp: float = 0.3
) -> TokenSpectra:
    """One seed's measurement: an attention and an MLP sublayer of one block."""
    return TokenSpectra(
        names=["blocks.0.attn", "blocks.0.mlp"], length=40, stream=[[1.0], [1.0]],
        branch=[[1.0], [1.0]], low_stream=[stream, 0.5], low_branch=[branch, 0.5],
        low_stream_ac=[0.5, 0.5], low_branch_ac=[0.5, 0.5], grad_skip=[1.0, 1.0],
        grad_branch=[1.0, 1.0], hf_change=[hf_attn, hf_mlp],
    )  # fmt: skip


def _setting(stream: list[float], branch: list[float], acc: float = 0.6) -> Setting:
    probes = [
        _spectra(s, b, -1.0 + 0.1 * i, 0.3 + 0.05 * i)
        for i, (s, b) in enumerate(zip(stream, branch))
    ]
    return Setting(init=probes, trained=probes, test_acc=[acc + 0.01 * i for i in range(len(probes))],
                   setup="hand-made")  # fmt: skip


def _result(a: Setting, b: Setting, warm: dict[str, list[float]] | None = None) -> Result:
    warm = warm or {"post-LN": [0.1, 0.11, 0.1], "post-LN + warm-up": [0.4, 0.45, 0.5],
                    "pre-LN": [0.85, 0.86, 0.84]}  # fmt: skip
    return Result(spectra={"mnist1d": a, "patches": b}, warm=warm, grad_init={},
                  settings=SCALES["tiny"], seeds=[0, 1, 2])  # fmt: skip


def _verdict(r: Result) -> Verdict:
    claim = TransformerLowpass()
    return Verdict.from_checks(claim.checks(r), claim.detail(r))


LOWPASS_STREAM = (
    [0.8, 0.7, 0.75],
    [0.5, 0.45, 0.55],
)  # stream, attention: stream clearly lower-pass
LOWPASS_ATTN = ([0.6, 0.5, 0.55], [0.9, 0.95, 0.85])  # attention clearly the more low-pass
OVERLAP = ([0.8, 0.5, 0.6], [0.6, 0.7, 0.55])  # the interval straddles 0


def test_criterion_decides_on_the_interval_in_both_settings():
    assert _verdict(_result(_setting(*LOWPASS_STREAM), _setting(*LOWPASS_STREAM))).status == "holds"
    fails = _verdict(_result(_setting(*LOWPASS_STREAM), _setting(*LOWPASS_ATTN)))
    assert fails.status == "fails"
    assert "patches: attention is not clearly the more low-pass path" in fails.reason
    assert "stream - attention low-frequency fraction -0.35" in fails.reason  # the effect size
    unsure = _verdict(_result(_setting(*LOWPASS_STREAM), _setting(*OVERLAP)))
    assert unsure.status == "inconclusive"
    assert "patches: the residual stream is clearly the more low-pass path" in unsure.reason


def test_a_failed_positive_control_makes_it_inconclusive_whatever_the_spectra():
    r = _result(_setting(*LOWPASS_ATTN, acc=0.12), _setting(*LOWPASS_ATTN))
    v = _verdict(r)
    assert v.status == "inconclusive"
    assert v.reason.startswith("the positive control failed, so the budget cannot decide")
    assert "mnist1d: the encoders learn the task" in v.reason


def test_one_seed_decides_nothing():
    one = _setting([0.5], [0.9])
    assert _verdict(_result(one, one)).status == "inconclusive"


def test_literature_rows_say_where_the_measurement_agrees():
    claim = TransformerLowpass()
    rows = {c.source.split(",")[0]: c for c in claim.literature(_result(_setting(*LOWPASS_ATTN),
                                                                       _setting(*LOWPASS_ATTN)))}  # fmt: skip
    assert rows["the article (this claim's statement)"].agrees is False
    assert rows["Wang et al. 2022"].agrees is True
    park = [c for c in claim.literature(_result(_setting(*LOWPASS_ATTN), _setting(*LOWPASS_ATTN)))
            if c.source.startswith("Park & Kim")]  # fmt: skip
    assert [c.agrees for c in park] == [True, True]  # attention lowers HF, the MLP raises it
    assert rows["Xiong et al. 2020"].agrees is True
    assert "0.347 [" in rows["Xiong et al. 2020"].measured  # post-LN's gain from warm-up
    mixed = {c.source.split(",")[0]: c.agrees
             for c in claim.literature(_result(_setting(*LOWPASS_STREAM), _setting(*OVERLAP)))}  # fmt: skip
    assert mixed["the article (this claim's statement)"] is None  # one setting undecided
    assert mixed["Wang et al. 2022"] is False


def test_xiong_is_not_compared_when_pre_ln_does_not_train():
    warm = {"post-LN": [0.1, 0.1, 0.1], "post-LN + warm-up": [0.4, 0.45, 0.5],
            "pre-LN": [0.2, math.nan, 0.25]}  # fmt: skip
    claim = TransformerLowpass()
    (xiong,) = [c for c in claim.literature(_result(_setting(*OVERLAP), _setting(*OVERLAP), warm))
                if c.source.startswith("Xiong")]  # fmt: skip
    assert xiong.agrees is None
    assert "the control failed, so the budget cannot decide" in xiong.measured
    # a run that diverged counts as chance, not as a missing value
    assert "pre-LN without warm-up 0.183" in xiong.measured


def test_patches_are_raster_ordered_tiles_and_xavier_gives_o1_embeddings():
    img = torch.arange(2 * 28 * 28, dtype=torch.float32).view(2, 1, 28, 28)
    data = TensorDataset(img, torch.tensor([0, 1]))
    tokens, grid = patches(Splits(data, data, name="x", num_classes=2, in_channels=1,
                                  input_shape=(1, 28, 28)), 4)  # fmt: skip
    x = tokens.train.tensors[0]
    assert grid == (7, 7) and x.shape == (2, 49, 16)
    assert torch.equal(x[0, 0], img[0, 0, :4, :4].flatten())  # top-left tile first
    assert torch.equal(x[1, 8], img[1, 0, 4:8, 4:8].flatten())  # row 1, column 1
    claim = TransformerLowpass()
    model = torch.nn.Sequential(torch.nn.Embedding(100, 64), torch.nn.Linear(64, 64))
    xavier_init(model)
    assert 0.9 < float(model[0].weight.std()) < 1.1  # O(1) inputs, not GPT-2's 0.02
    assert abs(float(model[1].weight.std()) - (1 / 64) ** 0.5) < 0.02 and not model[1].bias.any()
    assert claim.settings("quick").warm_up == claim.settings("quick").warm_steps // 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("c16")
    store = Store(tmp / "s.sqlite")
    outcomes = reproduce(select_claims("C16"), scale="tiny", store=store, workdir=tmp,
                         replicate=True)  # fmt: skip
    yield store, outcomes, tmp
    store.close()


def test_c16_tiny_measures_both_settings_and_replicates(tiny):
    store, outcomes, tmp = tiny
    assert [o.seedset for o in outcomes] == ["primary", "replicate"]
    assert outcomes[1].seeds == [1000]
    # one seed cannot give an interval, and tiny budgets fall short of the control
    assert all(o.status == "inconclusive" for o in outcomes), [o.reason for o in outcomes]
    row = store.latest_verdict("C16", "tiny")
    assert row is not None and len(row.run_ids) == 5
    ev = Evidence.from_dict(row.evidence)
    n = ev.numbers
    # GPT-2 init (N(0, 0.02)): attention starts near-uniform, so its output is almost the mean
    # over positions (pure DC) while the stream holds the varying signal
    assert n["mnist1d_low_branch_init"] > 0.9 > n["mnist1d_low_stream_init"]
    # under Xavier init (the patch encoders) attention is not uniform at init: its output varies
    # over the grid, so the near-pure DC above is the GPT-2 init's doing
    assert n["patches_low_branch_init"] < 0.9
    r = Result.from_json(ev.summary)
    patches = r.spectra["patches"].trained[0]
    assert patches.grid == [7, 7] and patches.length == 7
    assert len(patches.names) == 2 * SCALES["tiny"].n_layer  # attention and MLP per block
    assert all(g > 0 for g in patches.grad_skip + patches.grad_branch)
    assert set(r.warm) == {"post-LN", "post-LN + warm-up", "pre-LN"}
    assert all(len(v) == 1 and 0 <= v[0] <= 1 for v in r.warm.values())
    assert set(r.grad_init) == {"post_ln", "pre_ln"}
    assert len(r.grad_init["post_ln"]) == SCALES["tiny"].deep
    assert {c["source"].split(",")[0] for c in ev.literature} >= {"Wang et al. 2022",
                                                                    "Xiong et al. 2020"}  # fmt: skip
    figs = select_claims("C16")[0].report_figures(ev, tmp / "f")
    assert [f.path for f in figs] == ["transformer_lowpass.png"]
    assert (tmp / "f" / figs[0].path).stat().st_size > 10_000
