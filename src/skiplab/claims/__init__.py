"""The article's measurable statements as experiments with computed verdicts.

Each module ``cNN_<slug>.py`` registers one claim; importing this package loads them all. A
claim declares its experiment (:class:`Claim`); the runner (:func:`reproduce`) executes its
runs on an executor, caches them by identity and decides the verdict.
"""

import importlib
import pkgutil

from skiplab.claims._base import (
    SCALES,
    Check,
    Claim,
    Comparison,
    Evidence,
    Figure,
    Summary,
    Table,
    Verdict,
    catalogue,
    register_claim,
    select_claims,
    single_thread,
)
from skiplab.claims._executors import (
    EXECUTORS,
    Executor,
    ExecutorError,
    LocalExecutor,
    RayExecutor,
    SerialExecutor,
    make_executor,
)
from skiplab.claims._runner import (
    Fit,
    Outcome,
    Run,
    RunOutcome,
    RunRecord,
    Runs,
    RunSpec,
    execute,
    reproduce,
    run_key,
)

for _info in pkgutil.iter_modules(__path__):
    if _info.name[:1] == "c" and _info.name[1:3].isdigit():
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "EXECUTORS",
    "SCALES",
    "Check",
    "Claim",
    "Comparison",
    "Evidence",
    "Executor",
    "ExecutorError",
    "Figure",
    "Fit",
    "LocalExecutor",
    "Outcome",
    "RayExecutor",
    "Run",
    "RunOutcome",
    "RunRecord",
    "RunSpec",
    "Runs",
    "SerialExecutor",
    "Summary",
    "Table",
    "Verdict",
    "catalogue",
    "execute",
    "make_executor",
    "register_claim",
    "reproduce",
    "run_key",
    "select_claims",
    "single_thread",
]
