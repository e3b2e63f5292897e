"""GPU gemm and quantizers, against float64 references on the dequantized weights and the
C reference's bytes. Skipped without a GPU."""

import dataclasses

import numpy as np
import pytest

import w4a16

torch = pytest.importorskip("torch")
from models import QUANTIZERS, random_weight  # noqa: E402

pytestmark = pytest.mark.gpu


def bytes_of(t):
    return t.contiguous().view(torch.uint8).cpu().numpy()


def rel_err(y, ref):
    return (torch.linalg.norm(y.double() - ref) / torch.linalg.norm(ref)).item()


def reference(x, qw, bias=None, alpha=1.0):
    y = alpha * (x.double() @ qw.dequantize().double().T)
    return y if bias is None else y + bias.double()


@pytest.mark.parametrize("fmt", list(QUANTIZERS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gpu_quantizers_bytes_equal_cpu_reference(rng, fmt, dtype):
    w = random_weight(rng, 67, 512, dtype)
    w[3, :128] = 0
    gpu, cpu = QUANTIZERS[fmt](w), QUANTIZERS[fmt](w.cpu())
    assert gpu.codes.is_cuda
    assert np.array_equal(bytes_of(gpu.codes), bytes_of(cpu.codes))
    assert np.array_equal(bytes_of(gpu.scales), bytes_of(cpu.scales))
    if cpu.zero_points is not None:
        assert np.array_equal(bytes_of(gpu.zero_points), bytes_of(cpu.zero_points))
    assert torch.equal(gpu.dequantize().cpu(), cpu.dequantize())


@pytest.mark.parametrize("fmt", ["mxfp4", "int4-g32"])
def test_gpu_quantizers_reject_non_finite(fmt):
    w = torch.randn(16, 64, device="cuda")
    w[5, 33] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        QUANTIZERS[fmt](w)


@pytest.mark.parametrize("fmt", list(QUANTIZERS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m", list(range(1, 17)))
@pytest.mark.parametrize("layout", ["canonical", "prepacked"])
def test_gpu_gemm_small_m_against_float64(rng, fmt, dtype, m, layout):
    """The small-M kernel at every M it takes, both layouts: 13 tiles of 16 rows, fewer than
    the GPU's SMs, so it runs 8-row tiles over two K halves (split2), with two 8-row blocks of
    x from M = 9."""
    n, k = 203, 1024  # odd N: the last tile is partial
    qw = QUANTIZERS[fmt](random_weight(rng, n, k, dtype))
    if layout == "prepacked":
        qw = w4a16.prepack(qw)
    x = torch.from_numpy(rng.standard_normal((m, k)).astype(np.float32)).cuda().to(dtype)
    bias = torch.from_numpy(rng.standard_normal(n).astype(np.float32)).cuda().to(dtype)
    out = torch.full((m, n), float("nan"), device="cuda", dtype=dtype)  # poisoned
    y = w4a16.gemm(x, qw, bias=bias, alpha=0.5, out=out, config="gemv")
    assert y is out and torch.isfinite(out).all()
    ref = reference(x, qw, bias, 0.5)
    torch_y = torch.nn.functional.linear(x, qw.dequantize(str(dtype).removeprefix("torch.")) * 0.5, bias)
    ours, theirs = rel_err(y, ref), rel_err(torch_y, ref)
    assert ours <= 2 * theirs + 1e-6, (ours, theirs)


@pytest.mark.parametrize("fmt", ["nvfp4", "mxfp4", "int4-g128", "int4-g64-asym"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n,k,m", [(1024, 4096, 1), (1024, 4096, 16), (4096, 1024, 7), (2048, 16384, 3),
                                   (64, 256, 40), (300, 128, 100), (96, 2048, 257)])
def test_gpu_gemm_shapes_and_any_m(rng, fmt, dtype, n, k, m):
    qw = QUANTIZERS[fmt](random_weight(rng, n, k, dtype))
    x = torch.from_numpy(rng.standard_normal((m, k)).astype(np.float32)).cuda().to(dtype)
    y = w4a16.gemm(x, qw)
    ref = reference(x, qw)
    torch_y = x @ qw.dequantize(str(dtype).removeprefix("torch.")).T
    assert rel_err(y, ref) <= 2 * rel_err(torch_y, ref) + 1e-6


@pytest.mark.parametrize("fmt", ["nvfp4", "int4-g64-asym"])
@pytest.mark.parametrize("layout", ["canonical", "prepacked"])
@pytest.mark.parametrize("n,k", [(40009, 256), (16392, 512), (16392, 384), (17000, 1024), (4000, 2048)])
@pytest.mark.parametrize("m", [1, 4, 5, 16])
def test_gpu_gemm_small_m_tall_weights(rng, fmt, layout, n, k, m):
    """Tall weights give the small-M kernel as many tiles as resident warps: warps own whole
    tiles of 16 rows (N = 40009) or of 8 rows over two K halves (N = 16392, K = 512);
    K = 384 cannot be halved into super-tiles and takes CTA-shared tiles. N = 17000, K = 1024
    (4-warp CTAs on a 132-SM H100) and N = 4000, K = 2048 (8-warp CTAs) take steps of two
    super-tiles at M <= 4."""
    qw = QUANTIZERS[fmt](random_weight(rng, n, k, torch.bfloat16))
    if layout == "prepacked":
        qw = w4a16.prepack(qw)
    x = torch.from_numpy(rng.standard_normal((m, k)).astype(np.float32)).cuda().bfloat16()
    bias = torch.from_numpy(rng.standard_normal(n).astype(np.float32)).cuda().bfloat16()
    out = torch.full((m, n), float("nan"), device="cuda", dtype=torch.bfloat16)  # poisoned
    y = w4a16.gemm(x, qw, bias=bias, out=out, config=0)  # config 0: the small-M kernel
    assert torch.isfinite(y).all()
    ref = reference(x, qw, bias)
    torch_y = torch.nn.functional.linear(x, qw.dequantize("bfloat16"), bias)
    assert rel_err(y, ref) <= 2 * rel_err(torch_y, ref) + 1e-6


@pytest.mark.parametrize("fmt", list(QUANTIZERS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n,k", [(4000, 2048), (17000, 1024)])
@pytest.mark.parametrize("m", [1, 3])
def test_gpu_gemm_steps_of_two_super_tiles(rng, fmt, dtype, n, k, m):
    """At M <= 4 the small-M kernel takes two super-tiles per warp and step where K allows
    (8-warp CTAs for N = 4000, 4-warp CTAs for N = 17000 on a 132-SM H100): every format's
    scales must follow the second super-tile, in both layouts."""
    qw = QUANTIZERS[fmt](random_weight(rng, n, k, dtype))
    x = torch.from_numpy(rng.standard_normal((m, k)).astype(np.float32)).cuda().to(dtype)
    ref = reference(x, qw)
    torch_y = x @ qw.dequantize(str(dtype).removeprefix("torch.")).T
    for weights in (qw, w4a16.prepack(qw)):
        out = torch.full((m, n), float("nan"), device="cuda", dtype=dtype)  # poisoned
        y = w4a16.gemm(x, weights, out=out, config=0)  # config 0: the small-M kernel
        assert torch.isfinite(y).all()
        assert rel_err(y, ref) <= 2 * rel_err(torch_y, ref) + 1e-6


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_gemm_generic_path(rng, dtype):
    # K = 80 is not a multiple of 128 and x starts 2 bytes off a 16-byte boundary: the
    # generic kernel runs; it must agree with the reference as well
    qw = w4a16.quantize_nvfp4(random_weight(rng, 33, 80, dtype))
    base = torch.from_numpy(rng.standard_normal(5 * 80 + 1).astype(np.float32)).cuda().to(dtype)
    x = base[1:].view(5, 80)
    y = w4a16.gemm(x, qw)
    ref = reference(x, qw)
    assert rel_err(y, ref) <= 2 * rel_err(x @ qw.dequantize(str(dtype).removeprefix("torch.")).T, ref) + 1e-6


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fmt", ["nvfp4", "mxfp4"])
def test_gpu_gemm_half_codes_are_exact(dtype, fmt):
    # every code +-0.5 (E2M1 codes 1 and 9): the bit trick makes these subnormal 16-bit
    # values before scaling; the result must still be the exact sum of +-0.5 * x
    n, k = 32, 256
    nibbles = torch.where(torch.rand(n, k) < 0.5, 1, 9).to(torch.uint8)
    codes = (nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)).cuda()
    if fmt == "nvfp4":
        scales = torch.full((n, k // 16), 0x38, dtype=torch.uint8).view(torch.float8_e4m3fn).cuda()
        qw = w4a16.QuantizedWeight("nvfp4", (n, k), 16, codes, scales, global_scale=torch.tensor(1.0).cuda())
    else:
        scales = torch.full((n, k // 32), 127, dtype=torch.uint8).cuda()
        qw = w4a16.QuantizedWeight("mxfp4", (n, k), 32, codes, scales)
    x = torch.randint(-4, 5, (3, k), device="cuda").to(dtype)  # small integers: exact sums
    y = w4a16.gemm(x, qw)
    expected = x.double() @ qw.dequantize().double().T
    assert qw.dequantize().abs().eq(0.5).all()
    assert torch.equal(y.double(), expected)


def test_gpu_gemm_cuda_graph_and_side_stream(rng):
    qw = w4a16.quantize_nvfp4(random_weight(rng, 512, 2048, torch.bfloat16))
    x = torch.from_numpy(rng.standard_normal((4, 2048)).astype(np.float32)).cuda().bfloat16()
    eager = w4a16.gemm(x, qw)
    out = torch.empty_like(eager)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        w4a16.gemm(x, qw, out=out)  # warm-up on the capture stream
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        w4a16.gemm(x, qw, out=out)
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, eager)
    x2 = torch.from_numpy(rng.standard_normal((4, 2048)).astype(np.float32)).cuda().bfloat16()
    x.copy_(x2)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, w4a16.gemm(x2, qw))


def test_gpu_gemm_rejects_float32_x_and_cross_device(rng):
    qw = w4a16.quantize_nvfp4(random_weight(rng, 32, 128, torch.bfloat16))
    with pytest.raises(TypeError, match="x: expected dtype float16 or bfloat16 on CUDA"):
        w4a16.gemm(torch.randn(2, 128, device="cuda"), qw)
    with pytest.raises(ValueError, match="x: is on device"):
        w4a16.gemm(torch.randn(2, 128, dtype=torch.bfloat16), qw)


@pytest.mark.parametrize("layout", ["canonical", "prepacked"])
@pytest.mark.parametrize("m", [1, 16, 50])
@pytest.mark.parametrize("captured", [False, True])
def test_gpu_gemm_chain_reads_what_the_kernel_before_wrote(rng, layout, m, captured):
    """Back-to-back gemms on one stream with no synchronisation, as in a model's layers: each
    reads the output of the one before (a NaN-poisoned buffer until then), and before each a
    copy kernel writes the codes and the global scale it reads (NaN until then). From SM90
    the kernels are programmatic dependent launches that start before the prior kernel
    ends; they must still see all it wrote."""
    k = 1024
    shapes = [(4096, k), (k, 4096), (1024, k), (k, 1024)]  # N x K of each step; K = previous N
    weights, stale = [], []
    for n, kk in shapes:
        qw = w4a16.quantize_nvfp4(random_weight(rng, n, kk, torch.bfloat16) * (3.0 / kk**0.5))
        if layout == "prepacked":
            qw = w4a16.prepack(qw)
        weights.append(qw)
        stale.append(dataclasses.replace(qw, codes=torch.zeros_like(qw.codes),
                                         global_scale=torch.empty_like(qw.global_scale)))
    x = torch.from_numpy(rng.standard_normal((m, k)).astype(np.float32)).cuda().bfloat16()
    outs = [torch.empty(m, n, device="cuda", dtype=torch.bfloat16) for n, _ in shapes]

    def chain():
        h = x
        for qw, st, out in zip(weights, stale, outs):
            st.codes.copy_(qw.codes)  # the weight this gemm reads, written just before it
            st.global_scale.copy_(qw.global_scale)
            w4a16.gemm(h, st, out=out)
            h = out

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        if captured:
            chain()  # warm-up on the capture stream
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=stream):
                chain()
        for out in outs:
            out.fill_(float("nan"))
        for st in stale:
            st.codes.zero_()
            st.global_scale.fill_(float("nan"))
        if captured:
            graph.replay()
        else:
            chain()
    torch.cuda.synchronize()
    h = x
    for qw, out in zip(weights, outs):
        assert not out.isnan().any()
        assert rel_err(out, reference(h, qw)) < 1e-2
        h = out

