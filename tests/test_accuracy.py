"""Accuracy metrics against hand-computed values, reports on a small model, the CLI check."""

import math
import subprocess
import sys

import numpy as np
import pytest

from w4a16 import accuracy

torch = pytest.importorskip("torch")

import w4a16  # noqa: E402


def test_metrics_hand_computed():
    m = accuracy.metrics(np.array([3.0, 4.0]), np.array([3.0, 3.0]))
    assert m["rel_err"] == pytest.approx(1 / 5)
    assert m["cosine"] == pytest.approx(21 / (5 * math.sqrt(18)))
    assert m["sqnr_db"] == pytest.approx(10 * math.log10(25))
    assert m["max_abs"] == 1.0
    same = accuracy.metrics(torch.ones(4, dtype=torch.bfloat16), np.ones(4))
    assert same["rel_err"] == 0 and same["sqnr_db"] == math.inf and same["cosine"] == pytest.approx(1)


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="shape"):
        accuracy.metrics(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        accuracy.metrics(np.ones(3), np.array([1.0, np.nan, 1.0]))


def small_model(rng):
    torch.manual_seed(int(rng.integers(1 << 30)))
    return torch.nn.Sequential(torch.nn.Linear(256, 128), torch.nn.GELU(), torch.nn.Linear(128, 64),
                               torch.nn.Linear(64, 40)).to(torch.bfloat16)


def test_compare_weights_report(rng):
    model = small_model(rng)
    report = accuracy.compare_weights(model, formats=("nvfp4", "int4-g32", "int4-channel", "mxfp4", "int4-g128"))
    assert len(report.rows) == 3 * 5
    by = {(r["name"], r["format"]): r for r in report.rows}
    for name in ("0", "2"):
        assert by[(name, "int4-g32")]["sqnr_db"] > by[(name, "int4-channel")]["sqnr_db"]  # smaller groups win
        assert 0.9 < by[(name, "nvfp4")]["cosine"] < 1
    assert by[("3", "int4-g128")]["note"] == "skipped: K = 64 is not a multiple of 128"  # layer 3 has K = 64
    text, page = str(report), report._repr_html_()
    assert "nvfp4" in text and "SQNR dB" in text and page.count("<tr>") == len(report.rows) + 1
    summary = report.summary()
    assert set(summary) == {"nvfp4", "int4-g32", "int4-channel", "mxfp4", "int4-g128"}
    with pytest.raises(ValueError, match="unknown format"):
        accuracy.compare_weights(model, formats=("fp3",))
    one = accuracy.compare_weights(model, formats="mxfp4")  # one name, not its letters
    assert [r["format"] for r in one.rows] == ["mxfp4"] * 3


def test_compare_outputs_rejects_what_is_not_a_pair_of_models(rng):
    model = small_model(rng)
    x = torch.randn(2, 256, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="reference_model: expected a torch.nn.Module, got NoneType"):
        accuracy.compare_outputs(None, model, x)
    with pytest.raises(ValueError, match="names: \\['7'\\] are not modules of both models"):
        accuracy.compare_outputs(model, model, x, names=["0", "7"])
    assert [r["name"] for r in accuracy.compare_outputs(model, model, x, names="2").rows] == ["2", "output"]


def test_compare_weights_on_a_state_dict_and_plot(rng, tmp_path):
    model = small_model(rng)
    report = accuracy.compare_weights(model.state_dict(), formats=("nvfp4",), include=["0", "2"])
    assert [r["name"] for r in report.rows] == ["0", "2"]
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    ax = report.plot()
    ax.figure.savefig(tmp_path / "sqnr.png")
    assert (tmp_path / "sqnr.png").stat().st_size > 0


def test_compare_outputs_on_a_patched_gemma():
    pytest.importorskip("transformers")
    import copy

    from models import tiny_gemma

    reference = tiny_gemma(hidden=64, intermediate=256, vocab=128, heads=2)
    patched = copy.deepcopy(reference)
    w4a16.patch_mlp(patched, format="nvfp4")
    ids = torch.randint(0, 128, (1, 9))
    report = accuracy.compare_outputs(reference.model, patched.model, ids)
    names = [r["name"] for r in report.rows]
    assert "layers.0.mlp" in names and "layers.1.mlp" in names and names[-1] == "output"
    mlp_row = report.rows[names.index("layers.0.mlp")]
    assert 0 < mlp_row["rel_err"] < 0.3
    attention = [r for r in report.rows if r["name"] == "layers.0.self_attn.q_proj"]
    assert attention and attention[0]["rel_err"] == 0  # untouched layer, same input
    identical = accuracy.compare_outputs(reference.model, reference.model, ids)
    assert identical.rows[-1]["rel_err"] == 0


def test_cli_check_on_a_generated_checkpoint(rng, tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.torch import save_file

    tensors = {"layers.0.mlp.up_proj.weight": torch.randn(64, 128), "layers.0.mlp.down_proj.weight": torch.randn(128, 64),
               "norm.weight": torch.randn(128), "odd.weight": torch.randn(8, 40)}
    save_file(tensors, str(tmp_path / "ckpt.safetensors"))
    done = subprocess.run([sys.executable, "-m", "w4a16", "check", str(tmp_path / "ckpt.safetensors"), "--formats",
                           "nvfp4", "mxfp4"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "layers.0.mlp.up_proj" in out and "layers.0.mlp.down_proj" in out and "norm" not in out.split("mean")[0]
    assert "skipped: K = 40 is not a multiple of 32" in out and "mean SQNR" in out
