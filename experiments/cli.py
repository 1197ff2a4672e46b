"""Flags and set-up shared by the experiments' command-line tools (absl)."""

from __future__ import annotations

import os

from absl import flags, logging

DEFAULT_COMPILE_CACHE = os.path.expanduser("~/.cache/ua3dtalk_jax/xla")


def define_compile_cache() -> flags.FlagHolder:
    """--compile_cache: the persistent XLA compilation cache (`train.run.enable_compile_cache`)."""
    return flags.DEFINE_string("compile_cache", DEFAULT_COMPILE_CACHE,
                               "Persistent XLA compilation cache ('' = off).")  # fmt: skip


def define_subject(default: str | None = None) -> tuple[flags.FlagHolder, flags.FlagHolder]:
    """--subject and --data_root. default None (the tools that read a trained workdir): the
    subject the workdir records, see `eval.evaluation.workdir_subject`; the training tools pass
    "synthetic" (the embedded subject, built on first use)."""
    text = "Subject name under --data_root or path."
    if default is None:
        text = text[:-1] + (" (default: the one the workdir was trained on, as recorded in its "
                            "subject.json; else the preset's synthetic subject).")  # fmt: skip
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
    from ua3dtalk_jax.eval import evaluation  # noqa: PLC0415
    from ua3dtalk_jax.train import run  # noqa: PLC0415

    run.enable_compile_cache(compile_cache)
    evaluation.check_version(workdir)
    return evaluation.workdir_subject(subject, data_root, workdir)
