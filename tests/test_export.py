"""ModelOpt-style export: round trips bit for bit, the 128x4 scale layout, a patched Gemma,
and bad input that leaves nothing half-written."""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

import w4a16  # noqa: E402
from w4a16.export import load_modelopt, save_modelopt, swizzle_scales_128x4, unswizzle_scales_128x4  # noqa: E402


def weight(rng, n=48, k=256):
    return torch.from_numpy(rng.standard_normal((n, k)).astype(np.float32) * 0.05).to(torch.bfloat16)


def same(a, b):
    """Bitwise equality of two tensors of any dtype (or both None)."""
    if a is None or b is None:
        return a is None and b is None
    return a.dtype == b.dtype and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


@pytest.mark.parametrize("make", [w4a16.quantize_nvfp4, w4a16.quantize_mxfp4,
                                  lambda w: w4a16.pack_int4(w, 64), lambda w: w4a16.pack_int4(w, 128, symmetric=False)])
@pytest.mark.parametrize("swizzle", [False, True])
def test_round_trip_is_bit_exact(rng, tmp_path, make, swizzle):
    qws = {"layers.0.mlp.up_proj": make(weight(rng)), "layers.1.mlp.up_proj": make(weight(rng, 130, 256))}
    extra = {"norm.weight": torch.randn(256, dtype=torch.bfloat16)}
    config = save_modelopt({**qws, **extra}, str(tmp_path / "ckpt"), swizzle=swizzle)
    loaded, others, read_config = load_modelopt(str(tmp_path / "ckpt"))
    assert read_config == config
    assert config["quantization"]["quant_algo"] == {"nvfp4": "NVFP4", "mxfp4": "MXFP4",
                                                    "int4": "W4A16_AWQ"}[next(iter(qws.values())).format]
    for name, qw in qws.items():
        back = loaded[name]
        assert (back.format, back.shape, back.group_size) == (qw.format, qw.shape, qw.group_size)
        for a, b in ((qw.codes, back.codes), (qw.scales, back.scales), (qw.global_scale, back.global_scale),
                     (qw.zero_points, back.zero_points)):
            assert same(a, b)
    assert torch.equal(others["norm.weight"], extra["norm.weight"])
    block = json.load(open(tmp_path / "ckpt" / "quantization_config.json"))["quantization_config"]
    assert block["quant_method"] == "modelopt" and block["group_size"] == next(iter(qws.values())).group_size


def test_modelopt_names_and_dtypes(rng, tmp_path):
    from safetensors import safe_open

    save_modelopt({"fc": w4a16.quantize_nvfp4(weight(rng))}, str(tmp_path / "c"))
    with safe_open(str(tmp_path / "c" / "model.safetensors"), "pt") as f:
        assert f.get_tensor("fc.weight").dtype == torch.uint8 and f.get_tensor("fc.weight").shape == (48, 128)
        assert f.get_tensor("fc.weight_scale").dtype == torch.float8_e4m3fn
        assert f.get_tensor("fc.weight_scale").shape == (48, 16)
        assert f.get_tensor("fc.weight_scale_2").dtype == torch.float32 and f.get_tensor("fc.weight_scale_2").dim() == 0


def test_swizzle_layout_by_hand():
    # element (r, c) of a tile lands at (r % 32) * 16 + (r // 32) * 4 + c
    rows, cols = 130, 6  # padded to 256 x 8: four tiles of 512 bytes
    scales = torch.arange(rows * cols, dtype=torch.int64).remainder(251).to(torch.uint8).view(rows, cols)
    flat = swizzle_scales_128x4(scales)
    assert flat.numel() == 256 * 8
    for r, c in [(0, 0), (1, 0), (31, 3), (32, 0), (97, 2), (127, 3), (128, 0), (129, 5), (5, 4)]:
        tile = (r // 128) * 2 + c // 4
        rr, cc = r % 128, c % 4
        assert flat[tile * 512 + (rr % 32) * 16 + (rr // 32) * 4 + cc] == scales[r, c]
    assert flat[512 * 3 + 16 * 5] == 0  # padding rows are zero
    assert torch.equal(unswizzle_scales_128x4(flat, rows, cols), scales)
    for bad in (scales.view(-1), scales.to(torch.float16)):
        with pytest.raises(ValueError, match="scales: expected a 2-D tensor of one-byte scales"):
            swizzle_scales_128x4(bad)


def tiny_patched_gemma():
    pytest.importorskip("transformers")
    from models import tiny_gemma

    model = tiny_gemma(hidden=64, intermediate=256, vocab=128, heads=2)
    w4a16.patch_mlp(model, format="nvfp4")
    return model


def test_patched_gemma_exports_split_gate_up(tmp_path):
    pytest.importorskip("transformers")
    from models import tiny_gemma

    model = tiny_gemma(hidden=64, intermediate=256, vocab=128, heads=2)
    mlp = model.model.layers[0].mlp
    gate_w, up_w = mlp.gate_proj.weight.detach().clone(), mlp.up_proj.weight.detach().clone()
    w4a16.patch_mlp(model, format="nvfp4")
    config = save_modelopt(model, str(tmp_path / "gemma"))
    weights, others, _ = load_modelopt(str(tmp_path / "gemma"))
    assert set(weights) == {f"model.layers.{i}.mlp.{p}" for i in range(2) for p in ("gate_proj", "up_proj", "down_proj")}
    fused = model.model.layers[0].mlp.gate_up.quantized_weight()
    gate, up = weights["model.layers.0.mlp.gate_proj"], weights["model.layers.0.mlp.up_proj"]
    # the fused weight holds gate rows 8j..8j+7 at 16j.., up rows at 16j+8.. (w4a16.h)
    gate_rows = [16 * (r // 8) + r % 8 for r in range(256)]
    assert torch.equal(gate.codes, fused.codes[gate_rows])
    assert torch.equal(up.codes, fused.codes[[r + 8 for r in gate_rows]])
    assert torch.equal(gate.global_scale, up.global_scale)
    # and each is the original Linear quantized with the shared global scale
    for exported, original in ((gate, gate_w), (up, up_w)):
        alone = w4a16.quantize_nvfp4(original, global_scale=float(fused.global_scale))
        assert torch.equal(exported.codes, alone.codes)
        assert torch.equal(exported.scales.view(torch.uint8), alone.scales.view(torch.uint8))
    assert "model.layers.0.self_attn.q_proj" in config["quantization"]["exclude_modules"]
    assert "model.layers.0.self_attn.q_proj.weight" in others and "model.embed_tokens.weight" in others


def test_bad_input_leaves_nothing_half_written(rng, tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("user data")
    qw = w4a16.quantize_nvfp4(weight(rng))
    with pytest.raises(FileExistsError, match="overwrite"):
        save_modelopt({"a": qw}, str(target))
    assert os.listdir(target) == ["keep.txt"]
    with pytest.raises(TypeError, match="model_or_weights"):
        save_modelopt([qw], str(tmp_path / "x"))
    with pytest.raises(ValueError, match="no quantized weight"):
        save_modelopt(torch.nn.Linear(4, 4), str(tmp_path / "y"))
    with pytest.raises(ValueError, match="one format"):
        save_modelopt({"a": qw, "b": w4a16.quantize_mxfp4(weight(rng))}, str(tmp_path / "z"))
    with pytest.raises(TypeError, match="model_or_weights\\['b'\\]: expected a QuantizedWeight or a torch / numpy"):
        save_modelopt({"a": qw, "b": [1.0, 2.0]}, str(tmp_path / "z"))
    with pytest.raises(TypeError, match="names must be strings"):
        save_modelopt({"a": qw, 5: torch.ones(2)}, str(tmp_path / "z"))
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no staging directories left behind
    save_modelopt({"a": qw}, str(target), overwrite=True)
    assert sorted(os.listdir(target)) == ["hf_quant_config.json", "model.safetensors", "quantization_config.json"]


def test_cli_exports_a_generated_checkpoint(rng, tmp_path):
    import subprocess
    import sys

    from safetensors.torch import save_file

    tensors = {"model.layers.0.mlp.gate_proj.weight": weight(rng, 64, 128),
               "model.layers.0.mlp.down_proj.weight": weight(rng, 128, 64),
               "model.layers.0.self_attn.q_proj.weight": weight(rng, 128, 128),
               "model.norm.weight": torch.randn(128, dtype=torch.bfloat16)}
    save_file(tensors, str(tmp_path / "in.safetensors"))
    done = subprocess.run([sys.executable, "-m", "w4a16", "export", "--checkpoint", str(tmp_path / "in.safetensors"),
                           "--format", "int4", "--group-size", "64", "--output", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "2 weights as W4A16_AWQ" in done.stdout
    weights, others, config = load_modelopt(str(tmp_path / "out"))
    assert set(weights) == {"model.layers.0.mlp.gate_proj", "model.layers.0.mlp.down_proj"}
    assert torch.equal(weights["model.layers.0.mlp.gate_proj"].codes,
                       w4a16.pack_int4(tensors["model.layers.0.mlp.gate_proj.weight"], 64).codes)
    assert torch.equal(others["model.layers.0.self_attn.q_proj.weight"], tensors["model.layers.0.self_attn.q_proj.weight"])
    done = subprocess.run([sys.executable, "-m", "w4a16", "export", "--checkpoint", str(tmp_path / "in.safetensors"),
                           "--to", "onnx", "--output", str(tmp_path / "x.onnx")], capture_output=True, text=True)
    assert done.returncode == 2 and "--module" in done.stderr


def test_cli_keeps_weights_the_format_cannot_take_and_reports_errors_in_one_line(rng, tmp_path):
    import subprocess
    import sys

    from safetensors.torch import save_file

    # K = 80 is a multiple of NVFP4's block (16) but not of MXFP4's (32)
    tensors = {"model.layers.0.mlp.gate_proj.weight": weight(rng, 64, 128),
               "model.layers.0.mlp.down_proj.weight": weight(rng, 128, 80)}
    save_file(tensors, str(tmp_path / "in.safetensors"))

    def export(*args):
        return subprocess.run([sys.executable, "-m", "w4a16", "export", "--checkpoint", str(tmp_path / "in.safetensors"),
                               *args], capture_output=True, text=True)

    done = export("--format", "mxfp4", "--output", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "kept model.layers.0.mlp.down_proj.weight unquantized: K = 80" in done.stderr
    weights, others, _ = load_modelopt(str(tmp_path / "out"))
    assert set(weights) == {"model.layers.0.mlp.gate_proj"}
    assert torch.equal(others["model.layers.0.mlp.down_proj.weight"], tensors["model.layers.0.mlp.down_proj.weight"])
    done = export("--format", "mxfp4", "--output", str(tmp_path / "out"))  # exists, no --overwrite
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "python -m w4a16 export: error:" in done.stderr and "--overwrite" in done.stderr
    done = export("--format", "nvfp4", "--group-size", "32", "--output", str(tmp_path / "out2"))
    assert done.returncode == 1 and "--group-size: only int4 takes one" in done.stderr
    done = subprocess.run([sys.executable, "-m", "w4a16", "check", str(tmp_path / "missing.safetensors")],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr and "missing.safetensors" in done.stderr


def test_cli_exports_a_module_to_onnx(tmp_path):
    import pathlib
    import subprocess
    import sys

    onnx = pytest.importorskip("onnx")
    # the tests' folder (cli_model) ahead of whatever path finds w4a16 in this process
    path = [str(pathlib.Path(__file__).parent)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    done = subprocess.run([sys.executable, "-m", "w4a16", "export", "--module", "cli_model:build", "--format", "int4", "--group-size", "32",
                           "--to", "onnx", "--output", str(tmp_path / "mlp.onnx")], capture_output=True, text=True,
                          env=env)
    assert done.returncode == 0, done.stderr
    proto = onnx.load(str(tmp_path / "mlp.onnx"))
    # gate, up and down of each of the two MLPs (a fused gate_up goes out as its two Linears)
    assert sum(n.op_type == "DequantizeLinear" for n in proto.graph.node) == 6
