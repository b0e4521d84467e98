"""One registry for the zoo (after timm's ``_registry.py``).

``@register_model`` functions set architecture arguments only and call their family's private
builder; every model accepts ``skip=False`` for its plain twin.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from torch import nn

from skiplab.nn import name_skips

ModelFn = Callable[..., nn.Module]
ExampleFn = Callable[[], tuple[Any, ...]]

_MODELS: dict[str, ModelFn] = {}
_FAMILIES: dict[str, str] = {}
_EXAMPLES: dict[str, ExampleFn] = {}
_FAMILY_EXAMPLES: dict[str, ExampleFn] = {}


def register_model(fn: ModelFn | None = None, *, example: ExampleFn | None = None) -> Any:
    """Register ``fn`` under its function name; the family is its module's last name.

    Use bare (``@register_model``) or with ``example``, a function returning the positional
    inputs of one forward call of the default-built model (used by the registry sweep test
    and by ``skiplab diagnose``); otherwise the family's example applies.
    """

    def add(f: ModelFn) -> ModelFn:
        name = f.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered by {_FAMILIES[name]}")
        _MODELS[name] = f
        _FAMILIES[name] = f.__module__.rsplit(".", 1)[-1]
        if example is not None:
            _EXAMPLES[name] = example
        return f

    return add(fn) if fn is not None else add


def register_family_example(family: str, example: ExampleFn) -> None:
    """Set the example inputs of every model of ``family`` that has none of its own."""
    _FAMILY_EXAMPLES[family] = example


def example_inputs(name: str) -> tuple[Any, ...]:
    """Positional inputs for one forward call of ``create_model(name)`` with defaults."""
    family = model_family(name)
    fn = _EXAMPLES.get(name) or _FAMILY_EXAMPLES.get(family)
    if fn is None:
        raise ValueError(f"model {name!r} (family {family}) registered no example inputs")
    return fn()


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``; ``skip=False`` gives its plain twin.

    Raises:
        ValueError: unknown name (the message lists the known ones) or a bad argument.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    try:
        model = _MODELS[name](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for model {name!r}: {err}") from err
    model = name_skips(model)
    object.__setattr__(
        model, "skiplab_name", name
    )  # what a checkpoint records of the model (see train.trainer)
    return model


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    """Sorted names of registered models matching the glob ``pattern`` (and ``family``)."""
    return sorted(
        n
        for n in _MODELS
        if fnmatch.fnmatch(n, pattern) and (family is None or _FAMILIES[n] == family)
    )


def model_family(name: str) -> str:
    """The family (module) a registered model belongs to."""
    if name not in _FAMILIES:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _FAMILIES[name]
