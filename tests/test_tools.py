"""tests.tools.import_tool: tools that share flag names import one after another in one process."""

from __future__ import annotations

from absl import flags

from tests.tools import import_tool


def test_tools_sharing_flag_names_import_in_turn():
    gpu_check = import_tool("gpu_check")
    assert flags.FLAGS["out"].default == "gpu_report.md"
    assert callable(gpu_check.report)
    infer = import_tool("infer")
    assert flags.FLAGS["out"].default is None and "subject" in flags.FLAGS
    assert callable(infer.main)
    preprocess = import_tool("preprocess")
    assert flags.FLAGS["out"].help == "Subject directory to write."
    assert import_tool("preprocess") is preprocess
    assert (
        import_tool("gpu_check") is not gpu_check
    )  # imported afresh once another tool took its names
