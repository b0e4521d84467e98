"""The probes :func:`skiplab.diagnose` and ``skiplab diagnose`` run, one module each.

Each module registers one :class:`Probe` (its measurement and its page section); importing
this package loads them all, so a new probe is one new module here::

    @register_probe
    class Rank(Probe):
        name, title, order = "rank", "Feature rank", 45
        about = "Numerical rank of each block's output features."

        def measure(self, ctx: Context) -> dict[str, Any]: ...
        def page(self, sec: Section, result: dict[str, Any], figdir: Path) -> None: ...
"""

import importlib
import pkgutil

from skiplab.diagnostics.probes._base import (
    Context,
    Probe,
    Section,
    get_probe,
    name_ticks,
    parse_probes,
    probe_names,
    register_probe,
    registered,
    run_probes,
    sections,
)

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "Context",
    "Probe",
    "Section",
    "get_probe",
    "name_ticks",
    "parse_probes",
    "probe_names",
    "register_probe",
    "registered",
    "run_probes",
    "sections",
]
