"""skiplab: skip connections as parts, the architectures built on them, and what they do.

Quick tour::

    import skiplab
    net = skiplab.create_model("resnet56", in_channels=1, num_classes=10)
    plain = skiplab.create_model("resnet56", skip=False, in_channels=1)
"""

from skiplab.models import create_model, list_models, register_model

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models", "register_model"]
