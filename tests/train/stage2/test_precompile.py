"""Stage 2's programs compiled ahead (`train.stage2.precompile`): the loops load them from the cache.

In a fresh interpreter (JAX's persistent cache is set up once per process): the precompiler fills
an empty cache, then both branches and the fuse step train a few iterations on the tiny subject;
every compilation of their step programs and validation renders must be a persistent-cache hit,
i.e. the precompiled programs are exactly the ones the loops build.
"""

import copy
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ua3dtalk_jax.configs import apply_overrides
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.train.stage2 import precompile
from ua3dtalk_jax.train.stage2.loop import variants_of

# ten iterations reach all three variants of the tiny preset (warm-up 6, full ensemble from 9)
SHORT = [
    "train.face.iterations=10",
    "train.mouth.iterations=10",
    "train.fuse.iterations=2",
    "train.val_every=1000",
]

_SCRIPT = textwrap.dedent(
    """
    import json, logging, sys
    from ua3dtalk_jax.train import run
    run.enable_compile_cache(sys.argv[3])
    import jax, numpy as np
    from ua3dtalk_jax.configs import apply_overrides
    from ua3dtalk_jax.configs.io import load_config
    from ua3dtalk_jax.data import Subject
    from ua3dtalk_jax.head.features import WIDTHS
    from ua3dtalk_jax.head.validation import make_validator
    from ua3dtalk_jax.train import parallel
    from ua3dtalk_jax.train.stage2 import precompile
    from ua3dtalk_jax.train.stage2.loop import train_branch, train_fuse
    from ua3dtalk_jax.train.stage2.state import scene_extent

    cfg = apply_overrides(load_config(sys.argv[1]), json.loads(sys.argv[5]))
    subject = Subject.open(sys.argv[2])
    parts = json.loads(sys.argv[6])
    if "fuse" in parts:  # everything, as training does it
        done = precompile.Precompiler(cfg, subject, log=print).start().join()
    else:  # only the programs of these branches
        todo = [(n, f) for n, f in precompile.programs(cfg, subject) if n.split("/")[0] in parts]
        done = [(n, f().compile()) for n, f in todo]

    seen = []
    class Seen(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())
    logger = logging.getLogger("jax._src.compiler")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(Seen())

    features = {k: np.ones((len(subject), w), np.float32) for k, w in WIDTHS}
    views = np.stack([subject.viewmat(int(i)) for i in subject.split("train")])
    validate = make_validator(cfg, subject, features, sys.argv[4])
    kw = dict(extent=scene_extent(views), mesh=parallel.global_mesh(), log=lambda s: None)
    kw["validate"] = validate
    branches = {p: train_branch(cfg, p, subject, features, sys.argv[4], **kw) for p in parts if p != "fuse"}
    if "fuse" in parts:
        train_fuse(cfg, subject, features, sys.argv[4], branches, **kw)
    names = ("branch_step", "fuse_step", "validation_")
    steps = [m for m in seen if any(n in m for n in names)]
    print("RESULT", json.dumps({"done": [n for n, _ in done], "steps": steps}))
    """
)


def _run_loops(tiny_trained, tmp_path, overrides, parts) -> tuple[list, dict]:
    """(program names, the subprocess's result) for `programs()` of the tiny config with
    `overrides`, precompiled, then the loops of `parts` (branch names and/or "fuse")."""
    cfg = apply_overrides(copy.deepcopy(tiny_trained["cfg"]), overrides)  # the fixture's is shared
    names = [n for n, _ in precompile.programs(cfg, Subject.open(tiny_trained["subject"]))]
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _SCRIPT,
            tiny_trained["workdir"],
            tiny_trained["subject"],
            str(tmp_path / "cache"),
            str(tmp_path / "work"),
            json.dumps(overrides),
            json.dumps(parts),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return names, json.loads(out.stdout.split("RESULT", 1)[1])


def _all_hits(result: dict, n: int) -> None:
    hits = [m for m in result["steps"] if "cache hit" in m]
    misses = [m for m in result["steps"] if "MISS" in m]
    assert not misses, misses
    assert len(hits) == n, result["steps"]


def test_the_mouth_loop_loads_its_precompiled_programs_from_the_cache(tiny_trained, tmp_path):
    """The mouth branch alone, to its "train" variant (eight iterations: warm-up 6, full ensemble
    from 9): its two step programs and its validation render."""
    short = ["train.mouth.iterations=8", "train.val_every=1000"]
    names, result = _run_loops(tiny_trained, tmp_path, short, ["mouth"])
    mouth = [n for n in names if n.startswith("mouth/")]
    assert mouth == ["mouth/static", "mouth/train", "mouth/validation"]
    assert set(mouth) <= set(result["done"])
    _all_hits(result, len(mouth))


@pytest.mark.long
def test_the_loops_load_every_precompiled_program_from_the_cache(tiny_trained, tmp_path):
    names, result = _run_loops(tiny_trained, tmp_path, SHORT, ["face", "mouth", "fuse"])
    # both branches' three variants, in the order the side-by-side loops first need them, their
    # validation renders (one each: every validation of these short runs deforms), then fuse
    assert names == [
        "face/static",
        "mouth/static",
        "face/train",
        "mouth/train",
        "face/eval",
        "mouth/eval",
        "face/validation",
        "mouth/validation",
        "fuse",
        "fuse/validation",
    ]
    assert result["done"] == names
    _all_hits(result, len(names))


def test_variants_are_listed_once_each_with_their_first_iteration(tiny_trained):
    cfg = copy.deepcopy(tiny_trained["cfg"])  # apply_overrides changes it; the fixture's is shared
    b = cfg.train.face
    got = variants_of(cfg, b)
    assert [it for _, it in got] == [0, b.warmup, b.ensemble_from]
    assert [(v.deform, v.mode) for v, _ in got] == [
        (False, "eval"),
        (True, "train"),
        (True, "eval"),
    ]
    static = apply_overrides(cfg, ["train.deform=False"])
    assert [it for _, it in variants_of(static, static.train.face)] == [0]  # one static program
    assert np.all(np.diff([it for _, it in got]) > 0)


def test_run_precompiles_only_for_a_stage_2_that_follows_stage_1_in_the_same_run(
    tiny_trained, tmp_path, monkeypatch
):
    from ua3dtalk_jax.train import run

    started = []

    class Fake:
        def __init__(self, cfg, subject, log):
            pass

        def start(self):
            started.append(1)
            return self

    monkeypatch.setattr(precompile, "Precompiler", Fake)
    cfg, subject = tiny_trained["cfg"], Subject.open(tiny_trained["subject"])
    fresh, log = str(tmp_path / "fresh"), lambda s: None
    monkeypatch.setattr(precompile, "cache_enabled", lambda: False)
    assert run._precompiler(cfg, subject, fresh, "all", True, log) is None  # nowhere to keep them
    monkeypatch.setattr(precompile, "cache_enabled", lambda: True)
    assert run._precompiler(cfg, subject, fresh, "all", False, log) is None  # not asked for
    assert run._precompiler(cfg, subject, fresh, "1", True, log) is None  # no stage 2 follows
    # stage 1 already trained: nothing to overlap with
    assert run._precompiler(cfg, subject, tiny_trained["workdir"], "all", True, log) is None
    assert not started
    assert isinstance(run._precompiler(cfg, subject, fresh, "all", True, log), Fake)
    assert started == [1]
