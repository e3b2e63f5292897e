"""ONNX export: INT4 graphs run in onnxruntime and match w4a16's gemm; the NVFP4 double
dequantization evaluates to w4a16's dequantized weights exactly (onnx reference
evaluator, onnxruntime has no FP4 kernels); onnx.checker passes on every graph."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

import w4a16  # noqa: E402
from w4a16.export import to_onnx  # noqa: E402
from w4a16.onnx_export import dequantize_graph  # noqa: E402
from models import GemmaLikeMLP  # noqa: E402


def two_layer_mlp(dtype, fmt, **kwargs):
    torch.manual_seed(0)
    stack = torch.nn.Sequential(GemmaLikeMLP(128, 512), GemmaLikeMLP(128, 512)).to(dtype)
    w4a16.patch_mlp(stack, format=fmt, **kwargs)
    return stack


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("group", [64, 128])
@pytest.mark.parametrize("fuse", [True, False])
def test_int4_graph_runs_in_onnxruntime_and_matches_gemm(tmp_path, symmetric, group, fuse):
    ort = pytest.importorskip("onnxruntime")
    stack = two_layer_mlp(torch.float16, "int4", group_size=group, symmetric=symmetric, fuse_gate_up=fuse)
    x = torch.randn(2, 7, 128, dtype=torch.float16)
    path = str(tmp_path / "mlp.onnx")
    proto = to_onnx(stack, x, path)
    assert proto.opset_import[0].version == 21
    # fused or not, each MLP goes out as gate, up and down Linears (the model's own graph)
    assert sum(n.op_type == "DequantizeLinear" for n in proto.graph.node) == 6
    assert {i.data_type for i in proto.graph.initializer} >= {onnx.TensorProto.INT4 if symmetric else onnx.TensorProto.UINT4}
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    y_onnx = session.run(None, {"x": x.numpy()})[0].astype(np.float64)
    y = stack(x).double().numpy()
    # both compute in fp16: they may differ by fp16 rounding of the intermediates
    assert np.linalg.norm(y_onnx - y) / np.linalg.norm(y) < 5e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nvfp4_double_dequantization_is_exact(dtype):
    from onnx.reference import ReferenceEvaluator

    torch.manual_seed(1)
    module = w4a16.FP4Linear.from_linear(torch.nn.Linear(256, 96).to(dtype))
    proto = dequantize_graph(module)
    assert proto.opset_import[0].version == 23
    w_onnx = ReferenceEvaluator(proto).run(None, {})[0]
    w_ours = module.quantized_weight().dequantize().numpy()
    assert w_onnx.dtype == np.float32 and np.array_equal(w_onnx.view(np.uint32), w_ours.view(np.uint32))


def test_nvfp4_graph_evaluates_close_to_gemm():
    from onnx.reference import ReferenceEvaluator

    stack = two_layer_mlp(torch.float32, "nvfp4")
    x = torch.randn(3, 128)
    y_onnx = ReferenceEvaluator(to_onnx(stack, x)).run(None, {"x": x.numpy()})[0]
    y = stack(x).numpy()
    assert np.linalg.norm(y_onnx - y) / np.linalg.norm(y) < 1e-5


def test_unsupported_models_and_formats_raise():
    with pytest.raises(NotImplementedError, match="mxfp4"):
        to_onnx(two_layer_mlp(torch.float32, "mxfp4"), torch.randn(2, 128))
    with pytest.raises(NotImplementedError, match="ReLU"):
        to_onnx(torch.nn.Sequential(torch.nn.ReLU()), torch.randn(2, 128))
    with pytest.raises(TypeError, match="example_inputs"):
        to_onnx(two_layer_mlp(torch.float32, "nvfp4"), np.zeros((2, 128), np.float32))
