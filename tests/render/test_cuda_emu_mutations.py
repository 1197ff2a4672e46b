"""The CUDA emulation catches the bugs it exists for: mutated copies of csrc/cuda must fail.

Each case copies csrc/ to a temporary folder, makes one edit (asserted to apply exactly once),
builds the emulation from the copy with ASan and UBSan and runs two scenes with views batched
(one with partial tiles) in a subprocess, since a mutant may corrupt memory. The edits:
  * the barrier after the forward's shared-memory staging removed (a race: pixels read
    Gaussians their neighbours have not staged yet) -> results differ from the CPU kernel;
  * that barrier made divergent (skipped by the threads outside the image) -> the scheduler
    reports a barrier reached by part of the block;
  * the old sort key (view << tile_bits) | tile, found by the desk review -> the tile offsets
    are written out of bounds (ASan), views >= 1 render wrong;
  * the device's own expf back in exp_nonpos (the CPU keeps the polynomial) -> the forward is
    no longer bitwise the CPU's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.render import cuda_emu, screen_scenes
from tests.render.test_rasterize_cuda_emu import cpu_kernel

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        cuda_emu.gxx() is None or cuda_emu.libasan() is None, reason="needs g++ with ASan"
    ),
]
SCENES = ("odd_37x23_b3", "random_200x120_b2")
STAGED = """      s_conic[tid] = make_float3(conics[3 * g], conics[3 * g + 1], conics[3 * g + 2]);
    }
    __syncthreads();
    const int count = end - batch"""
MUTATIONS = {
    "barrier_removed": [("cuda/rasterize_fwd.cu", STAGED, STAGED.replace("__syncthreads();", ""))],
    "barrier_divergent": [
        (
            "cuda/rasterize_fwd.cu",
            STAGED,
            STAGED.replace("__syncthreads();", "if (inside) __syncthreads();"),
        )
    ],
    "old_sort_key": [
        (
            "cuda/tile_bins.cu",
            "const uint64_t list0 = uint64_t(i / in.n) * (uint64_t(tiles_x) * uint64_t(tiles_y));",
            (
                "int tile_bits = 0;\n  for (uint64_t t = uint64_t(tiles_x) * tiles_y; t > 0; t >>= 1) "
                "++tile_bits;\n  const uint64_t list0 = uint64_t(i / in.n) << tile_bits;"
            ),
        ),
        (
            "cuda/tile_bins.cu",
            "const int end_bit = 32 + list_bits;",
            "const int end_bit = 32 + BitWidth(uint64_t(tiles)) + BitWidth(uint64_t(in.batch));",
        ),
    ],
    "device_expf": [
        (
            "include/ua3d/raster_math.h",
            "UA3D_HD float exp_nonpos(float x) {\n",
            (
                "UA3D_HD float exp_nonpos(float x) {\n#if defined(__CUDA_ARCH__)\n"
                "  return expf(x < 0.0f ? x : 0.0f);\n#endif\n"
            ),
        )
    ],
}
RUN = """
import sys
import numpy as np
from tests.render import cuda_emu, screen_scenes
emu = cuda_emu.Emulator(sys.argv[1])
emu.schedule("forward")
out = {}
for name in sys.argv[3:]:
    scene = screen_scenes.edge_scene(name)
    v_render, v_alpha = screen_scenes.cotangents(scene, 0)
    try:
        render, trans, last = emu.forward(scene)
        grads = emu.backward(scene, trans, last, v_render, v_alpha)
    except cuda_emu.KernelFault as fault:
        print("KERNEL_FAULT", fault)
        sys.exit(3)
    out.update({f"{name}/render": render, f"{name}/last": last, f"{name}/v_means2d": grads[0]})
np.savez(sys.argv[2], **out)
"""


def mutate(tmp_path, edits) -> Path:
    root = tmp_path / "tree"
    shutil.copytree(cuda_emu.CSRC, root / "csrc")
    for rel, old, new in edits:
        path = root / "csrc" / rel
        text = path.read_text()
        assert text.count(old) == 1, f"mutation anchor not found once in {rel}: {old!r}"
        path.write_text(text.replace(old, new))
    return root


def run_mutant(tmp_path, edits):
    """Builds and runs a mutant: (returncode, stdout + stderr, outputs or None)."""
    root = mutate(tmp_path, edits)
    lib = cuda_emu.build(root, variant="sanitize", out_dir=tmp_path / "build")
    out = tmp_path / "out.npz"
    proc = subprocess.run(
        [sys.executable, "-c", RUN, str(lib), str(out), *SCENES],
        env=cuda_emu.sanitizer_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    outputs = dict(np.load(out)) if proc.returncode == 0 else None
    return proc.returncode, proc.stdout + proc.stderr, outputs


def differences(outputs: dict) -> list[str]:
    """What differs from the CPU kernel, per scene and output: the forward bit for bit, the
    gradient to rounding."""
    found = []
    for name in SCENES:
        scene = screen_scenes.edge_scene(name)
        (render, _, last), grads = cpu_kernel(scene, *screen_scenes.cotangents(scene, 0))
        for key, want, tol in (
            ("render", render, 0),
            ("last", last, 0),
            ("v_means2d", grads[0], 1e-4),
        ):
            got = outputs[f"{name}/{key}"]
            bad = ~np.isclose(got, want, rtol=tol, atol=tol)
            if bad.any():
                views = sorted({int(v) for v in np.nonzero(bad)[0]})
                found.append(f"{name}: {key} differs at {int(bad.sum())} entries (views {views})")
    return found


def test_unmutated_copy_matches(tmp_path):
    code, log, outputs = run_mutant(tmp_path, [])
    assert code == 0, log[-4000:]
    assert differences(outputs) == []


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_mutation_is_caught(tmp_path, mutation):
    code, log, outputs = run_mutant(tmp_path, MUTATIONS[mutation])
    if mutation == "barrier_divergent":
        partial = re.search(r"divergent barrier|reached by \d+ of 256 threads after", log)
        assert code == 3 and partial, log[-4000:]
        print(f"\n{mutation}: {log.strip().splitlines()[-1]}")
        return
    if mutation == "old_sort_key":
        assert code != 0 and "heap-buffer-overflow" in log and "TileOffsets" in log, log[-4000:]
        lines = re.findall(
            r"AddressSanitizer: .*|WRITE of size .*|#\d+ 0x\w+ in .*TileOffsets.*", log
        )
        print(f"\n{mutation}: " + " | ".join(line.strip() for line in lines[:3]))
        return
    found = differences(outputs)
    assert found, f"{mutation} was not caught"
    print(f"\n{mutation}: " + "; ".join(found))
