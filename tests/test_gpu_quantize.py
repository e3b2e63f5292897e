"""GPU quantizers: bytes identical to the C reference (the CPU path), on the caller's
stream, capturable in a CUDA graph. Skipped without a GPU."""

import numpy as np
import pytest

import w4a16

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu


def bytes_of(t):
    return t.contiguous().view(torch.uint8).cpu().numpy()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 16), (3, 48), (129, 2048), (1024, 4096)])
def test_nvfp4_gpu_bytes_equal_cpu_reference(rng, dtype, shape):
    w = torch.from_numpy(rng.standard_normal(shape).astype(np.float32) * rng.uniform(1e-3, 10)).to(dtype)
    w[0, :16] = 0  # an all-zero block
    cpu = w4a16.quantize_nvfp4(w)
    gpu = w4a16.quantize_nvfp4(w.cuda())
    assert gpu.codes.is_cuda and gpu.scales.dtype == torch.float8_e4m3fn
    assert np.array_equal(bytes_of(gpu.codes), bytes_of(cpu.codes))
    assert np.array_equal(bytes_of(gpu.scales), bytes_of(cpu.scales))
    assert float(gpu.global_scale) == float(cpu.global_scale)


def test_nvfp4_gpu_given_global_scale_and_misaligned_input(rng):
    base = torch.from_numpy(rng.standard_normal(64 * 256 + 1).astype(np.float32)).cuda()
    w = base[1:].view(64, 256)  # 4 bytes past a 16-byte boundary: the scalar-load path
    for gs in (None, 1e-4):
        gpu = w4a16.quantize_nvfp4(w, global_scale=gs)
        cpu = w4a16.quantize_nvfp4(w.cpu(), global_scale=gs)
        assert np.array_equal(bytes_of(gpu.codes), bytes_of(cpu.codes))
        assert np.array_equal(bytes_of(gpu.scales), bytes_of(cpu.scales))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nvfp4_gpu_rejects_non_finite(bad):
    w = torch.randn(32, 64, device="cuda")
    w[7, 9] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        w4a16.quantize_nvfp4(w)


def test_nvfp4_gpu_on_a_side_stream_and_in_a_graph(rng):
    w = torch.from_numpy(rng.standard_normal((256, 512)).astype(np.float32)).cuda().bfloat16()
    expected = w4a16.quantize_nvfp4(w.cpu())
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        q = w4a16.quantize_nvfp4(w)
    torch.cuda.current_stream().wait_stream(stream)
    assert np.array_equal(bytes_of(q.codes), bytes_of(expected.codes))
