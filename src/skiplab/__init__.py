"""skiplab: skip connections as parts, the architectures built on them, and what they do.

Quick tour::

    import skiplab
    net = skiplab.create_model("resnet56", in_channels=1, num_classes=10)
    plain = skiplab.create_model("resnet56", skip=False, in_channels=1)
    result = skiplab.diagnose(net, torch.randn(8, 1, 28, 28), target=labels, out="diag")

The registry functions are imported on first use (PEP 562), so ``import skiplab.cli`` does not
import torch: the CLI starts in a tenth of a second, and a Ctrl-C or SIGTERM during a
command's start-up lands inside ``main``, which turns it into one line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skiplab.diagnostics import Diagnosis, Inputs, diagnose
    from skiplab.models import create_model, list_models, register_model

__version__ = "0.1.0"

__all__ = [
    "Diagnosis", "Inputs", "__version__", "create_model", "diagnose", "list_models",
    "register_model",
]  # fmt: skip

_LAZY = {"create_model": "skiplab.models", "list_models": "skiplab.models",
         "register_model": "skiplab.models", "diagnose": "skiplab.diagnostics",
         "Diagnosis": "skiplab.diagnostics", "Inputs": "skiplab.diagnostics"}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'skiplab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
