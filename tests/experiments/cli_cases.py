"""Runs one experiments tool over several argument lists in one process (tests/experiments/
test_cli_errors.py): absl's flags are global per process, so each tool gets its own process, and
each case is a fresh parse of its arguments with stdout and stderr captured at the descriptor level
(what a terminal would show, child processes included).

    python -m tests.experiments.cli_cases MODULE CASES.json RESULTS.json

CASES.json: a list of argument lists. RESULTS.json: a list of {"code", "stdout", "stderr"}; an
exception escaping the tool is recorded as its traceback in "stderr" (the test then fails on it).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import traceback

from absl import flags


def run_case(module, args: list[str]) -> dict:
    flags.FLAGS.unparse_flags()
    sys.argv = [module.__file__, *args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        code = 0
        try:
            module.cli.run(module.main)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
            if e.code is not None and not isinstance(e.code, int):
                print(e.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - recorded for the test to fail on
            code = -1
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        out.seek(0)
        err.seek(0)
        return {
            "code": code,
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }


def main() -> None:
    name, cases_path, results_path = sys.argv[1:4]
    module = importlib.import_module(f"experiments.{name}")
    with open(cases_path) as f:
        cases = json.load(f)
    results = [run_case(module, args) for args in cases]
    with open(results_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
