"""Paper-scale training recipes: He et al. 2015's CIFAR-10 table and the pre-activation runs.

He et al. 2015, "Deep Residual Learning for Image Recognition", section 4.2 (CIFAR-10): SGD
with momentum 0.9, weight decay 1e-4, mini-batch 128, learning rate 0.1 divided by 10 at 32k
and 48k iterations, training ends at 64k iterations; 4-pixel padding, random 32x32 crops and
horizontal flips; option-A (zero-padding) shortcuts; He initialisation; BatchNorm.
(The paper trains on a 45k/5k train/val split to pick the schedule and reports test error of
the network trained on all 50k.) ResNet-110 starts at lr 0.01 for 400 iterations, then 0.1.

He et al. 2016, "Identity Mappings in Deep Residual Networks" (pre-activation), trains the same
way; its CIFAR-10 ResNet-110 with full pre-activation reaches 6.37% test error.

The test errors quoted below are the papers' (``paper_error``), kept so a full-scale run can be
set beside them; skiplab never reports them as its own result.

One GPU::

    skiplab train resnet56 --recipe he2015 --data cifar10 --data-dir ~/data/cifar-10-batches-bin \\
        --device cuda --name resnet56-he2015

Several GPUs on one machine (``--batch-size`` is the *global* batch, cut across ranks)::

    torchrun --standalone --nproc-per-node=4 -m skiplab.cli train resnet110 --recipe he2015 \\
        --data cifar10 --data-dir ~/data/cifar-10-batches-bin --device cuda --resume
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from skiplab.train.trainer import TrainConfig

__all__ = ["HE2015", "PAPER_RECIPES", "PaperRun", "paper_recipe", "paper_runs"]

#: The CIFAR-10 recipe of He et al. 2015, section 4.2.
HE2015 = TrainConfig(
    epochs=164,  # unused: max_steps rules (64k steps = 163.7 epochs of 50k at batch 128)
    batch_size=128,  # "mini-batch size of 128"
    lr=0.1,  # "start with a learning rate of 0.1"
    optimizer="sgd",
    momentum=0.9,
    weight_decay=1e-4,  # "weight decay of 0.0001"
    schedule="step",
    milestones=(0.5, 0.75),  # "divide it by 10 at 32k and 48k iterations" of 64k
    max_steps=64_000,  # "terminate training at 64k iterations"
    eval_batch_size=1000,
)

#: ResNet-110: "we use 0.01 to warm up the training until the training error is below 80%
#: (about 400 iterations), and then go back to 0.1" -- a linear warm-up over 400 steps is the
#: closest schedule the Trainer has.
HE2015_WARM = replace(HE2015, warmup_steps=400)

PAPER_RECIPES: dict[str, TrainConfig] = {"he2015": HE2015, "he2015-warmup": HE2015_WARM}


@dataclass(frozen=True)
class PaperRun:
    """One row of a paper's CIFAR-10 table: a registry model, its recipe and the paper's error."""

    model: str
    recipe: str
    paper_error: float | None  # test error in %, as published (None: only plotted, no number)
    source: str


def paper_runs() -> list[PaperRun]:
    """The CIFAR-10 runs of He et al. 2015 (Table 6, Fig. 6) and He et al. 2016 (Table 2)."""
    t6 = "He et al. 2015, Table 6"
    f6 = "He et al. 2015, Fig. 6 (plain nets: curves only)"
    return [
        PaperRun("plain20", "he2015", None, f6),
        PaperRun("plain32", "he2015", None, f6),
        PaperRun("plain44", "he2015", None, f6),
        PaperRun("plain56", "he2015", None, f6),
        PaperRun("resnet20", "he2015", 8.75, t6),
        PaperRun("resnet32", "he2015", 7.51, t6),
        PaperRun("resnet44", "he2015", 7.17, t6),
        PaperRun("resnet56", "he2015", 6.97, t6),
        PaperRun("resnet110", "he2015-warmup", 6.43, t6 + " (best of 5; mean 6.61 +- 0.16)"),
        PaperRun(
            "preresnet110", "he2015-warmup", 6.37, "He et al. 2016, Table 2 (full pre-activation)"
        ),
    ]


def paper_recipe(name: str) -> TrainConfig:
    """A recipe by name (``"he2015"``, ``"he2015-warmup"``).

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    try:
        return PAPER_RECIPES[name]
    except KeyError:
        raise ValueError(
            f"unknown recipe {name!r}; known recipes: {', '.join(sorted(PAPER_RECIPES))}"
        ) from None
