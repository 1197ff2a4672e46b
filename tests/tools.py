"""Importing an experiments tool into the test process.

Every tool defines its flags at import (absl's way), and several share names (--out, --subject,
--workdir). absl refuses a second definition of a name, so two tools imported into one pytest
worker collide. ``import_tool`` drops the flags of every other tool imported so far, and those
modules with them (a later ``import_tool`` imports them afresh), then imports the one asked for.
Hold the module it returns only within a test: another test's ``import_tool`` may unload it.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from absl import flags


def _is_tool(module_name: str) -> bool:
    return module_name == "experiments" or module_name.startswith("experiments.")


def import_tool(name: str) -> ModuleType:
    """experiments.<name>, imported with no other tool's flags registered."""
    full = f"experiments.{name}"
    registered = {m: list(fs) for m, fs in flags.FLAGS.flags_by_module_dict().items() if fs}
    # experiments.cli defines the shared flags (--subject, --compile_cache) for whichever tool called it
    others = {m for m in registered if _is_tool(m) and m not in (full, "experiments.cli")}
    if full in sys.modules and not others:
        return sys.modules[full]
    for module_name in sorted(others | {full, "experiments.cli"}):
        for flag in registered.get(module_name, []):
            if flag.name in flags.FLAGS:
                delattr(flags.FLAGS, flag.name)
    for module_name in [m for m in sys.modules if _is_tool(m) and m != "experiments"]:
        del sys.modules[module_name]
    return importlib.import_module(full)
