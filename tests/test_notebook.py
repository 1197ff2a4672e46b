"""notebooks/quickstart.ipynb runs top to bottom on the tiny trained subject (nbclient + ipykernel).

The workdir and subject go in through the environment variables the notebook's parameter cell
reads, so the notebook trains nothing and writes nothing into the repository; the compile cache is
the session's, so the kernel reuses what the other tests compiled.
"""

from __future__ import annotations

import json
import os

import pytest

NOTEBOOK = os.path.join(os.path.dirname(__file__), os.pardir, "notebooks", "quickstart.ipynb")
CELL_TIMEOUT_S = 600  # a cold compile of stage 1 + the renderer on 2 busy cores


@pytest.mark.slow
def test_quickstart_notebook_runs(tiny_trained, monkeypatch, tmp_path):
    import nbclient
    import nbformat

    root = tiny_trained["root"]
    monkeypatch.setenv("UA3D_WORKDIR", tiny_trained["workdir"])
    monkeypatch.setenv("UA3D_SUBJECT", tiny_trained["subject"])
    monkeypatch.setenv("UA3D_COMPILE_CACHE", str(root / "xla_cache"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4, f"expected the notebook's figures, got {len(images)} images"
    text = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
    assert tiny_trained["workdir"] in text and "no trained model" not in text
    assert "live Gaussians" in text and "rendered frames/s" in text
    start = text.index("{\n")
    summary, _ = json.JSONDecoder().raw_decode(text[start:])
    assert set(summary) == {"face", "mouth"}
    assert set(summary["face"]) == {"audio", "exp", "tone", "emotion"}
    weights = sum(v["weight"] for v in summary["face"].values())
    assert abs(weights - 1.0) < 1e-3
    assert not os.path.exists(os.path.join(str(tmp_path), "data"))
