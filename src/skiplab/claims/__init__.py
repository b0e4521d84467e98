"""The article's measurable statements as experiments with computed verdicts.

Each module ``cNN_<slug>.py`` registers one claim; importing this package loads them all.
"""

import importlib
import pkgutil

from skiplab.claims._base import (
    SCALES,
    Claim,
    Context,
    Evidence,
    Figure,
    Outcome,
    Table,
    Verdict,
    catalogue,
    register_claim,
    reproduce,
    select_claims,
    single_thread,
)

for _info in pkgutil.iter_modules(__path__):
    if _info.name[:1] == "c" and _info.name[1:3].isdigit():
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "SCALES",
    "Claim",
    "Context",
    "Evidence",
    "Figure",
    "Outcome",
    "Table",
    "Verdict",
    "catalogue",
    "register_claim",
    "reproduce",
    "select_claims",
    "single_thread",
]
