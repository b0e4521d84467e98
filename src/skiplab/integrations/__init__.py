"""The skip diagnostics in people's own training loops.

- :class:`skiplab.integrations.lightning.SkipDiagnostics`: a PyTorch Lightning callback
  (``pip install 'skiplab[lightning]'``);
- :class:`skiplab.integrations.hf.SkipDiagnosticsCallback`: a Hugging Face ``TrainerCallback``
  (``pip install 'skiplab[hf]'``).

Every ``k`` optimizer steps both measure, on the step's batch and the weights after the step,
the shortcut/branch split of the gradient at every residual add and Brock et al.'s signal
statistics of every block, and write them to TensorBoard as scalars named by qualified module
name (:func:`skip_scalars` lists the tags). Measuring leaves the run bitwise as it was.

This package imports neither library; each submodule says which extra it needs when its library
is missing.
"""

from skiplab.integrations._common import (
    ModelLoss,
    ScalarWriter,
    SkipScalars,
    preserved,
    skip_scalars,
)

__all__ = ["ModelLoss", "ScalarWriter", "SkipScalars", "preserved", "skip_scalars"]
