"""Size limits of the library (STYLE.md §10): files under ~400 lines, functions under ~80.

Read from the source with `ast` (nothing imported), so it runs in a fraction of a second. A
function's length is end_lineno - lineno + 1 (decorators not counted, docstring counted); a file's
is its number of lines.
"""

from __future__ import annotations

import ast
import functools
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "ua3dtalk_jax"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80
# (path under ua3dtalk_jax/, function name) allowed over MAX_FUNCTION_LINES: none today; an
# entry needs a reason beside it.
ALLOWED_LONG_FUNCTIONS: set[tuple[str, str]] = set()


@functools.cache
def _sizes() -> tuple[dict, list]:
    """({path: lines}, [(path, line, function name, lines)]) over the package's .py files."""
    files, functions = {}, []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel, src = path.relative_to(PACKAGE).as_posix(), path.read_text()
        files[rel] = len(src.splitlines())
        for node in ast.walk(ast.parse(src, rel)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append((rel, node.lineno, node.name, node.end_lineno - node.lineno + 1))
    return files, functions


def test_no_library_file_is_over_the_limit():
    files, _ = _sizes()
    long_files = [f"{rel}: {n} lines" for rel, n in files.items() if n > MAX_FILE_LINES]
    assert not long_files, f"files over {MAX_FILE_LINES} lines: " + "; ".join(long_files)


def test_no_library_function_is_over_the_limit():
    _, functions = _sizes()
    long_functions = [
        f"{rel}:{line} {name}: {n} lines"
        for rel, line, name, n in functions
        if n > MAX_FUNCTION_LINES and (rel, name) not in ALLOWED_LONG_FUNCTIONS
    ]
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines: " + "; ".join(
        long_functions
    )


def test_the_allow_list_names_only_long_functions():
    """An entry whose function is no longer long (or gone) is to be dropped from the list."""
    _, functions = _sizes()
    long = {(rel, name) for rel, _, name, n in functions if n > MAX_FUNCTION_LINES}
    stale = sorted(ALLOWED_LONG_FUNCTIONS - long)
    assert not stale, f"allowed but not over {MAX_FUNCTION_LINES} lines: {stale}"
