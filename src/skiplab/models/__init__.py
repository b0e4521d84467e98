"""The model zoo: every family registered, every model with its plain twin (``skip=False``)."""

from skiplab.models import (  # noqa: F401  (registers the families)
    gan,
    gnn,
    mlp,
    resnet,
    rnn,
    seq2seq,
    transformer,
    unet,
)
from skiplab.models._registry import (
    create_model,
    example_inputs,
    list_models,
    model_family,
    register_family_example,
    register_model,
)
from skiplab.models.mlp import ResMLP, ResMLPConfig
from skiplab.models.resnet import ResNet, ResNetConfig

__all__ = [
    "ResMLP",
    "ResMLPConfig",
    "ResNet",
    "ResNetConfig",
    "create_model",
    "example_inputs",
    "list_models",
    "model_family",
    "register_family_example",
    "register_model",
]
