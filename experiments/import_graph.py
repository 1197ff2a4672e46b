"""Prints which packages of ua3dtalk_jax import which (read from the source with `ast`, nothing run).

  python -m experiments.import_graph [--root=ua3dtalk_jax] [--lazy]

One line per package: the packages its modules import (top-level and, with --lazy, the imports inside
functions too), then the imports that go against the data-flow order of DESIGN.md §2 (a package may
import only packages listed before it in `ORDER`; types.py, configs/ and api.py are exempt as the
bottom and the top of the tree).
"""

from __future__ import annotations

import ast
import os
import sys
from collections import defaultdict

from absl import flags

from experiments import cli

_ROOT = flags.DEFINE_string("root", "ua3dtalk_jax", "Package folder to read.")
_LAZY = flags.DEFINE_bool("lazy", True, "Count imports inside functions too.")

# The data flow: each package may import the ones before it (and itself).
ORDER = (
    "types",
    "configs",
    "audio",
    "data",
    "preprocess",
    "models",
    "gaussians",
    "render",
    "head",
    "losses",
    "train",
    "infer",
    "eval",
)
EXEMPT = ("types", "configs", "api", "__init__")
# preprocess writes subjects and is never imported by the training side (STYLE.md §1); inference
# and evaluation use the trained model (head/), never the training code.
NEVER = {
    ("train", "preprocess"),
    ("head", "preprocess"),
    ("infer", "preprocess"),
    ("eval", "train"),
    ("infer", "train"),
}


def package_of(module: str, root: str) -> str | None:
    """ "ua3dtalk_jax.train.stage1" → "train" (None outside `root`)."""
    parts = module.split(".")
    if parts[0] != os.path.basename(root) or len(parts) < 2:
        return None
    return parts[1].removesuffix(".py")


def imports(root: str, lazy: bool = True) -> dict:
    """{package: {imported package: [module paths that import it]}} over the .py files of root."""
    name = os.path.basename(os.path.normpath(root))
    out: dict = defaultdict(lambda: defaultdict(list))
    for folder, _, files in os.walk(root):
        for f in sorted(files):
            if not f.endswith(".py"):
                continue
            path = os.path.join(folder, f)
            rel = os.path.relpath(path, os.path.dirname(os.path.normpath(root)))
            src_pkg = package_of(rel[:-3].replace(os.sep, "."), root) or "__init__"
            with open(path) as fh:
                tree = ast.parse(fh.read(), path)
            nodes = ast.walk(tree) if lazy else tree.body
            for node in nodes:
                mods = []
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                elif isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                for m in mods:
                    pkg = package_of(m, name)
                    if pkg is not None and pkg != src_pkg and path not in out[src_pkg][pkg]:
                        out[src_pkg][pkg].append(path)
    return out


def violations(graph: dict) -> list[tuple[str, str, list]]:
    """(importer, imported, files) against ORDER / NEVER."""
    rank = {p: i for i, p in enumerate(ORDER)}
    bad = []
    for src, deps in sorted(graph.items()):
        for dst, files in sorted(deps.items()):
            if (src, dst) in NEVER:
                bad.append((src, dst, files))
            elif src in EXEMPT or dst in EXEMPT or src not in rank or dst not in rank:
                continue
            elif rank[dst] > rank[src]:
                bad.append((src, dst, files))
    return bad


def main(argv):
    del argv
    graph = imports(_ROOT.value, _LAZY.value)
    for src in sorted(graph):
        print(f"{src:11s} -> {', '.join(sorted(graph[src]))}")
    bad = violations(graph)
    print(f"\n{len(bad)} imports against the data flow {' → '.join(ORDER)}")
    for src, dst, files in bad:
        print(f"  {src} imports {dst}: {', '.join(files)}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    cli.run(main)
