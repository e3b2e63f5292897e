"""The large-M path of the torch op: the GPU dequantizer (against the C reference's
values, bit for bit) and the sliced dequantize + cuBLAS matmul (against float64).
Skipped without a GPU."""

import pytest

import w4a16

torch = pytest.importorskip("torch")
from models import QUANTIZERS, random_weight  # noqa: E402

from w4a16 import torch_ops  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("fmt", list(QUANTIZERS))
@pytest.mark.parametrize("layout", ["canonical", "prepacked"])
@pytest.mark.parametrize("out_dtype", ["float32", "float16", "bfloat16"])
def test_gpu_dequantize_equals_cpu_reference(rng, fmt, layout, out_dtype):
    """The word kernel (K % 8 == 0) against the C reference, odd N, both layouts."""
    qw = QUANTIZERS[fmt](random_weight(rng, 67, 512, torch.float32, device="cpu"))
    if layout == "prepacked":
        qw = w4a16.prepack(qw)
    gpu = qw.to("cuda").dequantize(out_dtype)
    assert gpu.is_cuda
    assert torch.equal(gpu.cpu(), qw.dequantize(out_dtype))


@pytest.mark.parametrize("out_dtype", ["float32", "bfloat16"])
def test_gpu_dequantize_k_not_a_multiple_of_8(rng, out_dtype):
    """Per-channel INT4 with K = 36 takes the per-byte kernel; same values as the CPU."""
    qw = w4a16.pack_int4(random_weight(rng, 9, 36, torch.float32, device="cpu"), -1, symmetric=False)
    assert torch.equal(qw.to("cuda").dequantize(out_dtype).cpu(), qw.dequantize(out_dtype))


@pytest.mark.parametrize("fmt", ["nvfp4", "mxfp4", "int4-g64-asym", "int4-channel"])
@pytest.mark.parametrize("layout", ["canonical", "prepacked"])
@pytest.mark.parametrize("bias", [False, True])
def test_torch_op_large_m_in_slices(rng, monkeypatch, fmt, layout, bias):
    """Slices of 64 rows (the last one ragged) give y within 2x torch's own error."""
    monkeypatch.setattr(torch_ops, "LARGE_M", 0)
    monkeypatch.setattr(torch_ops, "LARGE_M_PREPACKED", 0)
    monkeypatch.setattr(torch_ops, "LARGE_M_PREPACKED_WGMMA", 0)
    monkeypatch.setattr(torch_ops, "DEQUANT_SLICE_MIN_ROWS", 64)
    n, k, m, alpha = 200, 512, 70, 0.75
    monkeypatch.setattr(torch_ops, "DEQUANT_SLICE_BYTES", 64 * 2 * k)
    qw = QUANTIZERS[fmt](random_weight(rng, n, k, torch.bfloat16))
    if layout == "prepacked":
        qw = w4a16.prepack(qw)
    x = torch.from_numpy(rng.standard_normal((m, k))).to("cuda", torch.bfloat16)
    b = torch.from_numpy(rng.standard_normal(n)).to("cuda", torch.bfloat16) if bias else None
    y = torch.ops.w4a16.gemm(x, qw.codes, qw.scales, qw.global_scale, qw.zero_points, b,
                             torch_ops.FORMAT_CODES[qw.format], qw.group_size, alpha,
                             w4a16._C.LAYOUT_PREPACKED if layout == "prepacked" else w4a16._C.LAYOUT_CANONICAL)
    w64 = qw.dequantize().double()
    ref = alpha * (x.double() @ w64.T) + (b.double() if bias else 0)
    w16 = qw.dequantize("bfloat16")
    theirs = torch.nn.functional.linear(x, w16 * alpha, b) if bias else (x @ w16.T) * alpha

    def rel(v):
        return (torch.linalg.norm(v.double() - ref) / torch.linalg.norm(ref)).item()

    assert y.shape == (m, n) and torch.isfinite(y).all()
    assert rel(y) <= 2 * rel(theirs) + 1e-6, (rel(y), rel(theirs))
