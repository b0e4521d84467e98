"""A claim of your own on skiplab's runner: "a residual MLP trains deeper than its plain twin".

Run it like the built-in ones, on any executor (workers import this module by name)::

    PYTHONPATH=. skiplab reproduce --claims X10 --scale tiny   # after `import examples.my_claim`

or from Python (see ``tests/test_examples.py``)::

    import examples.my_claim
    from skiplab.claims import reproduce, select_claims
"""

from __future__ import annotations

from dataclasses import dataclass

from skiplab.claims import Check, Claim, Run, Runs, Summary, register_claim
from skiplab.claims._stats import Stat, difference
from skiplab.data import load_mnist1d
from skiplab.models import create_model
from skiplab.train import Classification, TrainConfig


@dataclass(frozen=True)
class Settings:
    depth: int = 32  # residual MLP layers: deep enough that the plain twin struggles
    epochs: int = 5  # MNIST-1D, 4,000 examples: 160 steps of batch 128
    n_train: int | None = None  # all of MNIST-1D's training split
    lr: float = 1e-3  # Adam, no weight decay


SCALES = {"tiny": Settings(depth=16, epochs=3, n_train=1000), "quick": Settings(),
          "full": Settings(depth=64, epochs=30)}  # fmt: skip


@dataclass(frozen=True)
class Condition:
    skip: bool  # the residual network, or its plain twin


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, float]:
    """One training run: the final training loss."""
    data = load_mnist1d().subset(s.n_train, None)
    model = run.build(lambda: create_model("resmlp", depth=s.depth, in_features=40, skip=c.skip))
    cfg = TrainConfig(epochs=s.epochs, lr=s.lr, optimizer="adam", weight_decay=0.0)
    fit = run.fit(model, Classification(data.train, data.test), cfg)
    return {"train_loss": fit.last.get("train_loss", float("nan"))}


@dataclass
class Result(Summary):
    gap: Stat  # plain minus residual final training loss, paired by seed


@register_claim
class DeepResidualMLP(Claim[Settings, Condition, Result]):
    id = "X10"
    slug = "deep-residual-mlp"
    title = "A deep residual MLP trains better than its plain twin"
    statement = "Residual connections let a deep MLP train where its plain twin struggles."
    method = "Residual and plain MLPs of the same depth, same init seed, same Adam budget."
    criterion = "Holds when the plain twin's final loss exceeds the residual one's, 95% CI > 0."
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        return [Condition(True), Condition(False)]

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        plain, res = runs.values("train_loss", skip=False), runs.values("train_loss", skip=True)
        return Result(difference(plain, res, paired=True))

    def checks(self, r: Result) -> list[Check]:
        return [
            Check("the plain twin ends with the higher loss", r.gap.mean > 0, r.gap.interval()),
            Check(
                "the 95% interval excludes 0",
                r.gap.excludes_zero,
                r.gap.interval(),
                kind="evidence",
            ),
        ]
