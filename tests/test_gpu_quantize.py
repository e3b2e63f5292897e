"""GPU quantizers: bytes identical to the C reference (the CPU path), on the caller's
stream, capturable in a CUDA graph. Skipped without a GPU."""

import os
import shutil
import subprocess

import ml_dtypes
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


@pytest.mark.parametrize("shape", [(16384, 2048), (2048, 16384)])
def test_nvfp4_gpu_bytes_equal_cpu_reference_on_pi05_weights(rng, shape):
    """Pi0.5's large weights, several in a row with different global scales: the three
    kernels of a call overlap (programmatic dependent launch) and a stale global scale or
    an early read shows here; small tensors finish too fast to show it."""
    for _ in range(3):
        w = torch.from_numpy(rng.standard_normal(shape).astype(np.float32) * rng.uniform(1e-3, 1)).bfloat16()
        gpu = w4a16.quantize_nvfp4(w.cuda())
        cpu = w4a16.quantize_nvfp4(w)
        assert np.array_equal(bytes_of(gpu.global_scale.reshape(1)), bytes_of(cpu.global_scale.reshape(1)))
        assert np.array_equal(bytes_of(gpu.scales), bytes_of(cpu.scales))
        assert np.array_equal(bytes_of(gpu.codes), bytes_of(cpu.codes))


def test_nvfp4_gpu_given_global_scale_and_misaligned_input(rng):
    base = torch.from_numpy(rng.standard_normal(64 * 256 + 1).astype(np.float32)).cuda()
    w = base[1:].view(64, 256)  # 4 bytes past a 16-byte boundary: the scalar-load path
    for gs in (None, 1e-4):
        gpu = w4a16.quantize_nvfp4(w, global_scale=gs)
        cpu = w4a16.quantize_nvfp4(w.cpu(), global_scale=gs)
        assert np.array_equal(bytes_of(gpu.codes), bytes_of(cpu.codes))
        assert np.array_equal(bytes_of(gpu.scales), bytes_of(cpu.scales))


def rounding_midpoint_blocks(rng, blocks: int, dtype) -> np.ndarray:
    """Blocks whose elements sit on the E2M1 rounding midpoints of their block scale and
    a few ulps either side. With a global scale of 1 the block scale is the E4M3 value d
    (the block amax is 6 d exactly) and x / d is exactly 0.25, 0.75, ... 5 or its
    neighbours: the cases where a division-free encoder could round differently."""
    codes = rng.integers(0x20, 0x60, blocks).astype(np.uint8)  # normal E4M3 scales
    d = codes.view(ml_dtypes.float8_e4m3fn).astype(np.float32)
    midpoints = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], np.float32)
    w = (d[:, None] * rng.choice(midpoints, (blocks, 16))).astype(dtype)
    steps = rng.integers(-20, 21, (blocks, 16))  # ulps of the input dtype
    bits = w.view(np.uint32 if dtype == np.float32 else np.uint16)
    w = (bits.astype(np.int64) + steps).astype(bits.dtype).view(dtype)
    w = w * rng.choice(np.array([-1, 1], dtype), (blocks, 16))
    w[:, 0] = 6 * d  # the block amax: block scale exactly d
    return w


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_nvfp4_gpu_bytes_equal_cpu_reference_at_rounding_midpoints(rng, dtype):
    np_dtype = np.float32 if dtype == "float32" else ml_dtypes.bfloat16
    w = torch.from_numpy(rounding_midpoint_blocks(rng, 64 * 64, np_dtype).astype(np.float32))
    w = w.reshape(64, 1024).to(getattr(torch, dtype))
    for gs in (1.0, None):
        gpu = w4a16.quantize_nvfp4(w.cuda(), global_scale=gs)
        cpu = w4a16.quantize_nvfp4(w, global_scale=gs)
        assert np.array_equal(bytes_of(gpu.scales), bytes_of(cpu.scales))
        assert np.array_equal(bytes_of(gpu.codes), bytes_of(cpu.codes))


@pytest.mark.parametrize("offset", [1, 2, 3, 4])
def test_nvfp4_gpu_misaligned_outputs(rng, offset):
    """Codes and scales views that start off any alignment: the kernel's 8-byte stores give
    way to byte stores, and the amax pass's per-CTA words go to the first aligned word."""
    w = torch.from_numpy(rng.standard_normal((96, 512)).astype(np.float32)).cuda().bfloat16()
    codes = torch.full((96 * 256 + offset,), 0xAB, dtype=torch.uint8, device="cuda")[offset:].view(96, 256)
    scales = torch.full((96 * 32 + offset,), 0xAB, dtype=torch.uint8, device="cuda")[offset:].view(96, 32)
    gs = torch.empty((), dtype=torch.float32, device="cuda")
    w4a16._C.quantize_nvfp4(w, codes, scales.view(torch.float8_e4m3fn), gs, None,
                            torch.cuda.current_stream().cuda_stream)
    cpu = w4a16.quantize_nvfp4(w.cpu())
    assert np.array_equal(bytes_of(codes), bytes_of(cpu.codes))
    assert np.array_equal(bytes_of(scales), bytes_of(cpu.scales))
    assert float(gs) == float(cpu.global_scale)


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


def test_e4m3_hardware_conversion_equals_the_c_rule(tmp_path):
    """The quantizer's SM89+ scale rounding (cvt.rn.satfinite.e4m3x2.f32) against
    w4a16_e4m3_encode for every non-negative float: built with nvcc, run on the GPU."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("needs nvcc")
    major, minor = torch.cuda.get_device_capability()
    if major * 10 + minor < 89:
        pytest.skip("the hardware conversion needs SM89 or later")
    source = os.path.join(os.path.dirname(__file__), "cuda", "check_e4m3_cvt.cu")
    binary = tmp_path / "check_e4m3_cvt"
    subprocess.run([nvcc, "-O2", f"-arch=sm_{major}{minor}", "-o", str(binary), source], check=True)
    result = subprocess.run([str(binary)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
