"""FP4Linear / Int4Linear and the custom ops on CPU (patch_mlp: test_patch.py; the GPU
versions of the compile and CUDA-graph checks are in test_gpu_nn.py)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import w4a16  # noqa: E402
from w4a16 import torch_ops  # noqa: E402

MODULE_MAKERS = {
    "nvfp4": lambda lin: w4a16.FP4Linear.from_linear(lin, "nvfp4"),
    "mxfp4": lambda lin: w4a16.FP4Linear.from_linear(lin, "mxfp4"),
    "int4-g64": lambda lin: w4a16.Int4Linear.from_linear(lin, 64),
    "int4-channel-asym": lambda lin: w4a16.Int4Linear.from_linear(lin, -1, symmetric=False),
}


def make_linear(rng, k, n, bias=True, dtype=torch.bfloat16):
    lin = torch.nn.Linear(k, n, bias=bias)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(rng.standard_normal((n, k)).astype(np.float32) * 0.05))
        if bias:
            lin.bias.copy_(torch.from_numpy(rng.standard_normal(n).astype(np.float32)))
    return lin.to(dtype)


def reference(module, x):
    w = module.quantized_weight().dequantize().double()
    y = x.double() @ w.T
    return y if module.bias is None else y + module.bias.double()


@pytest.mark.parametrize("kind", list(MODULE_MAKERS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_module_matches_dequantized_reference(rng, kind, dtype):
    lin = make_linear(rng, 256, 72, dtype=dtype)
    module = MODULE_MAKERS[kind](lin)
    x = torch.from_numpy(rng.standard_normal((2, 3, 256)).astype(np.float32)).to(dtype)
    y = module(x)
    assert y.shape == (2, 3, 72) and y.dtype == dtype
    ref = reference(module, x)
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    assert (torch.linalg.norm(y.double() - ref) / torch.linalg.norm(ref)).item() < tol
    assert not any(p.dtype in (torch.float16, torch.bfloat16) and p.dim() == 2 for p in module.parameters())


def test_non_contiguous_activation_is_copied(rng):
    module = w4a16.FP4Linear.from_linear(make_linear(rng, 64, 16))
    x = torch.randn(64, 4, dtype=torch.bfloat16).T  # [4, 64], not contiguous
    assert torch.equal(module(x), module(x.contiguous()))


@pytest.mark.parametrize("kind", list(MODULE_MAKERS))
def test_state_dict_round_trip_into_meta_module(rng, kind):
    lin = make_linear(rng, 128, 40)
    module = MODULE_MAKERS[kind](lin)
    state = module.state_dict()
    assert state["weight"].dtype == torch.uint8 and state["weight"].shape == (40, 64)
    with torch.device("meta"):
        if module.format == "int4":
            fresh = w4a16.Int4Linear(128, 40, group_size=module.group_size, symmetric=module.weight_zero_point is None)
        else:
            fresh = w4a16.FP4Linear(128, 40, format=module.format)
    fresh.load_state_dict(state, assign=True)
    x = torch.randn(3, 128, dtype=torch.bfloat16)
    assert torch.equal(fresh(x), module(x))


def test_dtype_casts_keep_the_quantized_buffers(rng):
    module = w4a16.FP4Linear.from_linear(make_linear(rng, 64, 32))
    gs = module.weight_scale_2.clone()
    module.half()
    assert module.weight_scale.dtype == torch.float8_e4m3fn and module.weight_scale_2.dtype == torch.float32
    assert module.weight.dtype == torch.uint8 and module.bias.dtype == torch.float16
    assert torch.equal(module.weight_scale_2, gs)
    module.to("cpu", torch.bfloat16)
    assert module.weight_scale_2.dtype == torch.float32 and module.bias.dtype == torch.bfloat16


def test_custom_op_passes_opcheck(rng):
    module = w4a16.Int4Linear.from_linear(make_linear(rng, 128, 24), 32, symmetric=False)
    x = torch.randn(5, 128, dtype=torch.bfloat16)
    args = (x, module.weight, module.weight_scale, module.weight_scale_2, module.weight_zero_point, module.bias,
            torch_ops.FORMAT_CODES["int4"], 32, 1.0, w4a16._C.LAYOUT_PREPACKED)
    torch.library.opcheck(torch.ops.w4a16.gemm.default, args)


def test_custom_ops_pass_opcheck_with_gradients(rng):
    # int4: opcheck's schema test multiplies inputs, which torch cannot do for float8 scales
    module = w4a16.Int4Linear.from_linear(make_linear(rng, 64, 40, dtype=torch.float32), 32, symmetric=False)
    weight = (module.weight, module.weight_scale, None, module.weight_zero_point)
    bias = module.bias.detach().clone().requires_grad_()
    x = torch.randn(3, 64, requires_grad=True)
    fmt, P = torch_ops.FORMAT_CODES["int4"], w4a16._C.LAYOUT_PREPACKED
    torch.library.opcheck(torch.ops.w4a16.gemm.default, (x, *weight, bias, fmt, 32, 0.5, P))
    torch.library.opcheck(torch.ops.w4a16.dequantize.default, (*weight, fmt, 32, P, torch.bfloat16))


@pytest.mark.parametrize("kind", list(MODULE_MAKERS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backward_matches_float64_reference(rng, kind, dtype):
    """A quantized layer inside a model that is trained (frozen 4-bit MLPs, trained
    adapters): dx = dy @ dequant(W), dbias = dy summed over rows, no gradient for W."""
    module = MODULE_MAKERS[kind](make_linear(rng, 128, 48, dtype=dtype))
    module.bias.requires_grad_()
    x = torch.from_numpy(rng.standard_normal((2, 5, 128)).astype(np.float32)).to(dtype).requires_grad_()
    grad_y = torch.from_numpy(rng.standard_normal((2, 5, 48)).astype(np.float32)).to(dtype)
    module(x).backward(grad_y)
    w = module.quantized_weight().dequantize().double()  # the C reference dequantizer
    want_x, want_bias = grad_y.double() @ w, grad_y.double().sum((0, 1))
    assert x.grad.dtype == dtype and x.grad.shape == x.shape and module.bias.grad.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 2e-2  # bf16: one rounding of W, of dy and of the product
    assert (x.grad.double() - want_x).abs().max() <= tol * want_x.abs().max()
    assert (module.bias.grad.double() - want_bias).abs().max() <= tol * want_bias.abs().max()
    assert all(t.grad is None for t in (module.weight, module.weight_scale))


def test_backward_scales_by_alpha_and_compiles(rng):
    module = w4a16.Int4Linear.from_linear(make_linear(rng, 64, 24, dtype=torch.float32), 32, symmetric=False)
    fmt, P = torch_ops.FORMAT_CODES["int4"], w4a16._C.LAYOUT_PREPACKED

    def layer(x):
        return torch.ops.w4a16.gemm(x, module.weight, module.weight_scale, None, module.weight_zero_point, None, fmt,
                                    32, 0.25, P)

    x = torch.randn(4, 64, requires_grad=True)
    grad_y = torch.randn(4, 24)
    layer(x).backward(grad_y)
    w = module.quantized_weight().dequantize().double()
    assert torch.allclose(x.grad.double(), 0.25 * grad_y.double() @ w, rtol=1e-5, atol=1e-6)
    eager_grad = x.grad.clone()
    x.grad = None
    torch.compile(layer, fullgraph=True, backend="aot_eager")(x).backward(grad_y)
    assert torch.equal(x.grad, eager_grad)


def test_compile_fullgraph_has_no_graph_break(rng):
    block = torch.nn.Sequential(w4a16.FP4Linear.from_linear(make_linear(rng, 64, 64)), torch.nn.GELU(),
                                w4a16.Int4Linear.from_linear(make_linear(rng, 64, 32), 32))
    x = torch.randn(4, 64, dtype=torch.bfloat16)
    explanation = torch._dynamo.explain(block)(x)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    compiled = torch.compile(block, fullgraph=True, backend="eager")
    assert torch.equal(compiled(x), block(x))


def test_op_checks_every_shape_it_passes_as_a_raw_pointer(rng):
    module = w4a16.Int4Linear.from_linear(make_linear(rng, 128, 24), 32, symmetric=False)
    x = torch.randn(2, 128, dtype=torch.bfloat16)
    op, fmt, P = torch.ops.w4a16.gemm, torch_ops.FORMAT_CODES["int4"], w4a16._C.LAYOUT_PREPACKED
    good = dict(codes=module.weight, scales=module.weight_scale, zp=module.weight_zero_point, bias=module.bias)
    cases = [("scales", dict(good, scales=module.weight_scale[:, :2].contiguous())),
             ("zero_points", dict(good, zp=module.weight_zero_point[:12].contiguous())),
             ("bias", dict(good, bias=module.bias[:5].contiguous()))]
    for word, args in cases:
        with pytest.raises(ValueError, match=word):
            op(x, args["codes"], args["scales"], None, args["zp"], args["bias"], fmt, 32, 1.0, P)
    with pytest.raises(ValueError, match="x: expected"):
        op(torch.randn(2, 64, dtype=torch.bfloat16), module.weight, module.weight_scale, None,
           module.weight_zero_point, module.bias, fmt, 32, 1.0, P)
    with pytest.raises(ValueError, match="group_size"):
        op(x, module.weight, module.weight_scale, None, module.weight_zero_point, module.bias, fmt, 48, 1.0, P)
    with pytest.raises(TypeError, match="x: dtype torch.int32"):
        op(x.to(torch.int32), module.weight, module.weight_scale, None, module.weight_zero_point, module.bias, fmt,
           32, 1.0, P)
    # byte sizes: the kernels would read past a 2-byte global scale, or misread codes
    with pytest.raises(TypeError, match="zero_points: expected dtype torch.uint8, got torch.int32"):
        op(x, module.weight, module.weight_scale, None, module.weight_zero_point.to(torch.int32), module.bias, fmt,
           32, 1.0, P)
    with pytest.raises(TypeError, match="codes: expected dtype torch.uint8, got torch.int8"):
        op(x, module.weight.view(torch.int8), module.weight_scale, None, module.weight_zero_point, module.bias, fmt,
           32, 1.0, P)
    nv = w4a16.FP4Linear.from_linear(make_linear(rng, 128, 24))
    with pytest.raises(TypeError, match="global_scale: expected dtype torch.float32, got torch.float16"):
        op(x, nv.weight, nv.weight_scale, nv.weight_scale_2.half(), None, None, torch_ops.FORMAT_CODES["nvfp4"], 16,
           1.0, P)


def test_bias_of_another_dtype_than_x_is_read_in_x_dtype(rng):
    # a bf16 module called with float32 x: the kernel reads bias in x's dtype, so the op
    # converts it (it once read the bf16 bias as float32: garbage, and past its end)
    module = w4a16.FP4Linear.from_linear(make_linear(rng, 128, 40, dtype=torch.bfloat16))
    assert module.bias.dtype == torch.bfloat16
    x = torch.from_numpy(rng.standard_normal((3, 128)).astype(np.float32))
    y = module(x)
    assert y.dtype == torch.float32
    ref = reference(module, x)
    assert (y.double() - ref).abs().max() <= 1e-5 * ref.abs().max()


BAD_ARGUMENTS = [
    ("unknown format", lambda lin: w4a16.FP4Linear.from_linear(lin, "fp3"), ValueError, "format"),
    ("int4 format on FP4Linear", lambda lin: w4a16.FP4Linear.from_linear(lin, "int4"), ValueError, "format"),
    ("group that does not divide K", lambda lin: w4a16.Int4Linear.from_linear(torch.nn.Linear(96, 8), 64),
     ValueError, "96"),
    ("unsupported group", lambda lin: w4a16.Int4Linear.from_linear(lin, 48), ValueError, "group_size"),
    ("module without weight", lambda lin: w4a16.FP4Linear.from_linear(torch.nn.ReLU()), TypeError, "weight"),
    ("K not a multiple of the block", lambda lin: w4a16.FP4Linear.from_linear(torch.nn.Linear(40, 8)), ValueError,
     "multiple"),
    ("negative in_features", lambda lin: w4a16.FP4Linear(-64, 32), ValueError, "in_features: expected a positive int"),
    ("in_features as a string", lambda lin: w4a16.Int4Linear("64", 32, group_size=32), ValueError, "in_features"),
    ("float32 int4 scales", lambda lin: w4a16.Int4Linear(64, 32, group_size=32, scale_dtype=torch.float32),
     ValueError, "scale_dtype"),
    ("patch with unknown format", lambda lin: w4a16.patch_mlp(torch.nn.Sequential(lin), format="int8"),
     ValueError, "format"),
    ("patch with bad group", lambda lin: w4a16.patch_mlp(torch.nn.Sequential(lin), format="int4", group_size=100),
     ValueError, "group_size"),
]


@pytest.mark.parametrize("case", BAD_ARGUMENTS, ids=[c[0] for c in BAD_ARGUMENTS])
def test_bad_arguments_raise_clear_errors(rng, case):
    _, call, exc, word = case
    with pytest.raises(exc, match=word):
        call(make_linear(rng, 128, 16))
