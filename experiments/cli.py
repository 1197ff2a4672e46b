"""Flags and set-up shared by the experiments' command-line tools (absl).

Every tool starts with `cli.run(main)` instead of `app.run(main)`. It first bounds glibc's
allocator (`ua3dtalk_jax.train.heap.bound_heap`: freed memory goes back to the system). Then a flag
absl cannot parse (unknown, malformed, outside an enum) and a stray positional argument are one
line on stderr and exit 1, like the tools' own refusals (`fail`), instead of absl's usage text.
Required flags are checked by `require` inside `main` for the same reason (absl's
`mark_flags_as_required` prints two lines).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from ua3dtalk_jax.train import heap

DEFAULT_COMPILE_CACHE = os.path.expanduser("~/.cache/ua3dtalk_jax/xla")


def define_compile_cache() -> flags.FlagHolder:
    """--compile_cache: the persistent XLA compilation cache (`train.run.enable_compile_cache`)."""
    return flags.DEFINE_string(
        "compile_cache", DEFAULT_COMPILE_CACHE, "Persistent XLA compilation cache ('' = off)."
    )


def define_subject(default: str | None = None) -> tuple[flags.FlagHolder, flags.FlagHolder]:
    """--subject and --data_root. default None (the tools that read a trained workdir): the
    subject the workdir records, see `head.workdir.Workdir.subject_dir`; the training tools pass
    "synthetic" (the embedded subject, built on first use)."""
    text = "Subject name under --data_root or path."
    if default is None:
        text = text[:-1] + (
            " (default: the one the workdir was trained on, as recorded in its "
            "subject.json; else the preset's synthetic subject)."
        )
    subject = flags.DEFINE_string("subject", default, text)
    data_root = flags.DEFINE_string("data_root", "data", "Folder of subjects.")
    return subject, data_root


def quiet_orbax() -> None:
    """WARNING verbosity unless --verbosity was given (orbax logs every restore at INFO)."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def open_trained(workdir: str, subject: str, data_root: str, compile_cache: str) -> str:
    """Set-up of the tools that read a finished workdir: compile cache on, the workdir's format
    version checked, and the subject directory it was trained on (errors name the fix)."""
    from ua3dtalk_jax.head.workdir import Workdir
    from ua3dtalk_jax.train import run

    run.enable_compile_cache(compile_cache)
    wd = Workdir(workdir)
    wd.check_version()
    return wd.subject_dir(subject, data_root)


def tool_name(argv0: str) -> str:
    """ "…/experiments/train.py" → "train"."""
    return os.path.splitext(os.path.basename(argv0))[0]


def fail(argv0: str, error) -> None:
    """Exits 1 with one line: "<tool>: <message>" (whitespace of a multi-line message folded)."""
    sys.exit(f"{tool_name(argv0)}: {' '.join(str(error).split())}")


def run(main) -> None:
    """`app.run(main)` with one-line flag errors (module docstring)."""

    def parse(argv):
        try:
            rest = flags.FLAGS(argv)
        except flags.Error as e:
            fail(argv[0], e)
        if len(rest) > 1:
            fail(argv[0], f"unexpected arguments {rest[1:]} (flags are --name=value)")
        return rest

    heap.bound_heap()  # before XLA's threads allocate (ua3dtalk_jax.train.heap)
    app.run(main, flags_parser=parse)


def require(**values) -> None:
    """ValueError "--name is required" for the first of `values` (flag → value) that is unset."""
    for name, value in values.items():
        if value in (None, ""):
            raise ValueError(f"--{name} is required")
