"""Every public function rejects bad input with a clear exception that names the
argument, and a rejected call writes nothing."""

import numpy as np
import pytest
import torch

import w4a16
from w4a16 import _C


@pytest.fixture
def w(rng):
    return rng.standard_normal((32, 64)).astype(np.float32)


@pytest.fixture
def qw(w):
    return w4a16.quantize_nvfp4(w)


@pytest.fixture
def x(rng):
    return rng.standard_normal((4, 64)).astype(np.float32)


BAD_QUANTIZE_INPUTS = [
    # (description, call, exception, words the message must contain)
    ("float64 weight", lambda w: w4a16.quantize_nvfp4(w.astype(np.float64)), TypeError, ["w", "float64"]),
    ("int32 weight", lambda w: w4a16.quantize_mxfp4(w.astype(np.int32)), TypeError, ["w", "int32"]),
    ("rank-1 weight", lambda w: w4a16.quantize_nvfp4(w[0]), ValueError, ["w", "2 dimensions"]),
    ("rank-3 weight", lambda w: w4a16.pack_int4(w[None]), ValueError, ["w", "2 dimensions"]),
    ("K not a multiple of 16", lambda w: w4a16.quantize_nvfp4(np.ascontiguousarray(w[:, :40])), ValueError,
     ["w", "K = 40", "multiple", "16"]),
    ("K not a multiple of 32", lambda w: w4a16.quantize_mxfp4(np.ascontiguousarray(w[:, :48])), ValueError,
     ["w", "K = 48", "32"]),
    ("unsupported group size", lambda w: w4a16.pack_int4(w, 48), ValueError, ["group_size", "48"]),
    ("group that does not divide K", lambda w: w4a16.pack_int4(np.ascontiguousarray(w[:, :32]).repeat(3, 1), 64),
     ValueError, ["K = 96", "group_size 64"]),
    ("empty K, one group per channel", lambda w: w4a16.pack_int4(np.ascontiguousarray(w[:, :0]), -1), ValueError,
     ["w", "non-empty", "[32, 0]"]),
    ("group size of the wrong type", lambda w: w4a16.pack_int4(w, 32.0), TypeError, ["group_size"]),
    ("bad scale dtype", lambda w: w4a16.pack_int4(w, 32, scale_dtype="float32"), ValueError, ["scale_dtype"]),
    ("NaN in weight", lambda w: w4a16.quantize_nvfp4(np.where(np.arange(64) == 5, np.nan, w).astype(np.float32)),
     ValueError, ["w", "NaN", "[0, 5]"]),
    ("Inf in weight (mxfp4)", lambda w: w4a16.quantize_mxfp4(np.where(np.arange(64) == 9, np.inf, w).astype(np.float32)),
     ValueError, ["w", "Inf"]),
    ("-Inf in weight (int4)", lambda w: w4a16.pack_int4(np.where(np.arange(64) == 1, -np.inf, w).astype(np.float32), 32),
     ValueError, ["w", "Inf"]),
    ("non-contiguous weight", lambda w: w4a16.quantize_nvfp4(np.ascontiguousarray(w[:, :32].repeat(2, 0)).T),
     ValueError, ["w", "contiguous"]),
    ("big-endian weight", lambda w: w4a16.quantize_mxfp4(w.astype(">f4")), ValueError, ["w", "byte order", ">f4"]),
    ("weight requiring grad", lambda w: w4a16.quantize_nvfp4(torch.from_numpy(w).requires_grad_()), ValueError,
     ["w", "requires grad", "detach"]),
    ("weight on an unsupported device", lambda w: w4a16.quantize_nvfp4(torch.empty(32, 64, device="meta")),
     ValueError, ["w", "device"]),
    ("not an array", lambda w: w4a16.quantize_nvfp4(w.tolist()), TypeError, ["w", "list"]),
    ("negative global scale", lambda w: w4a16.quantize_nvfp4(w, global_scale=-1.0), ValueError, ["global_scale"]),
    ("NaN global scale", lambda w: w4a16.quantize_nvfp4(w, global_scale=float("nan")), ValueError, ["global_scale"]),
]


@pytest.mark.parametrize("case", BAD_QUANTIZE_INPUTS, ids=[c[0] for c in BAD_QUANTIZE_INPUTS])
def test_quantizers_reject_bad_input(w, case):
    _, call, exc, words = case
    with pytest.raises(exc) as info:
        call(w)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


BAD_GEMM_INPUTS = [
    ("x with the wrong K", lambda x, qw: w4a16.gemm(np.ascontiguousarray(x[:, :32]), qw), ValueError, ["x", "64"]),
    ("x of an integer dtype", lambda x, qw: w4a16.gemm(x.astype(np.int16), qw), TypeError, ["x", "int16"]),
    ("x float64", lambda x, qw: w4a16.gemm(x.astype(np.float64), qw), TypeError, ["x", "float64"]),
    ("non-contiguous x", lambda x, qw: w4a16.gemm(np.ascontiguousarray(np.tile(x, 2))[:, ::2], qw), ValueError,
     ["x", "contiguous"]),
    ("x requiring grad", lambda x, qw: w4a16.gemm(torch.from_numpy(x).requires_grad_(), qw), ValueError,
     ["x", "requires grad"]),
    ("weight not a QuantizedWeight", lambda x, qw: w4a16.gemm(x, x), TypeError, ["qw", "QuantizedWeight"]),
    ("out of the wrong shape", lambda x, qw: w4a16.gemm(x, qw, out=np.empty((4, 31), np.float32)), ValueError,
     ["out", "[4, 32]"]),
    ("out of the wrong dtype", lambda x, qw: w4a16.gemm(x, qw, out=np.empty((4, 32), np.float16)), TypeError,
     ["out", "float16"]),
    ("out of another framework", lambda x, qw: w4a16.gemm(x, qw, out=torch.empty(4, 32)), TypeError, ["out"]),
    ("bias of the wrong length", lambda x, qw: w4a16.gemm(x, qw, bias=np.zeros(33, np.float32)), ValueError,
     ["bias", "[32]"]),
    ("bias of the wrong dtype", lambda x, qw: w4a16.gemm(x, qw, bias=np.zeros(32, np.float16)), TypeError,
     ["bias", "float16"]),
    ("NaN alpha", lambda x, qw: w4a16.gemm(x, qw, alpha=float("nan")), ValueError, ["alpha"]),
    ("alpha as a string", lambda x, qw: w4a16.gemm(x, qw, alpha="2"), TypeError, ["alpha", "real number", "str"]),
    ("dequantize to an unknown dtype", lambda x, qw: w4a16.dequantize(qw, "int8"), ValueError, ["dtype", "int8"]),
]


@pytest.mark.parametrize("case", BAD_GEMM_INPUTS, ids=[c[0] for c in BAD_GEMM_INPUTS])
def test_gemm_rejects_bad_input(x, qw, case):
    _, call, exc, words = case
    with pytest.raises(exc) as info:
        call(x, qw)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_read_only_output_is_rejected_and_untouched(x, qw):
    out = np.full((4, 32), 7.0, np.float32)
    out.flags.writeable = False
    with pytest.raises((ValueError, BufferError)) as info:
        w4a16.gemm(x, qw, out=out)
    assert "read-only" in str(info.value) or "readonly" in str(info.value).replace("-", "")
    assert (out == 7.0).all()


def test_c_layer_rejects_aliasing_output(x, qw):
    # the output overlapping an input would corrupt the result: refused, nothing written
    buffer = np.zeros(4 * 64, np.float32)
    buffer[:] = x.reshape(-1)
    before = buffer.copy()
    with pytest.raises(ValueError, match="out.*overlaps x|y: overlaps x"):
        _C.gemm(buffer.reshape(4, 64), qw.c_weight(), None, 1.0, buffer[: 4 * 32].reshape(4, 32), None, -1, None)
    assert np.array_equal(buffer, before)


def test_quantize_rejects_a_global_scale_output_inside_codes(rng):
    # the GPU quantizer uses codes as scratch and writes global_scale_out last: must not alias
    w = rng.standard_normal((8, 64)).astype(np.float32)
    buffer = np.zeros(8 * 32, np.uint8)
    codes = buffer.reshape(8, 32)
    scales = np.zeros((8, 4), np.uint8)
    with pytest.raises(ValueError, match="global_scale_out: overlaps codes"):
        _C.quantize_nvfp4(w, codes, scales, buffer[:4].view(np.float32).reshape(()), None, None)
    assert not buffer.any()


def _state_with(state, key, value):
    changed = dict(state)
    changed[key] = value
    return changed


BAD_STATES = [
    # (description, state from a good nvfp4 state, exception, words the message must contain)
    ("missing weight_scale", lambda s: {"weight": s["weight"]}, KeyError, ["weight_scale"]),
    ("codes as a list", lambda s: _state_with(s, "weight", s["weight"].tolist()), TypeError, ["state['weight']", "list"]),
    ("rank-1 codes", lambda s: _state_with(s, "weight", s["weight"].reshape(-1)), ValueError,
     ["state['weight']", "2 dimensions", "[1024]"]),
    ("rank-3 scales", lambda s: _state_with(s, "weight_scale", s["weight_scale"][None]), ValueError,
     ["state['weight_scale']", "2 dimensions"]),
    ("float32 scales and no format", lambda s: {"weight": s["weight"], "weight_scale": np.ones((32, 4), np.float32)},
     TypeError, ["state['weight_scale']", "float32", "format"]),
]


@pytest.mark.parametrize("case", BAD_STATES, ids=[c[0] for c in BAD_STATES])
def test_from_state_dict_rejects_bad_state(w, case):
    _, make, exc, words = case
    with pytest.raises(exc) as info:
        w4a16.QuantizedWeight.from_state_dict(make(w4a16.quantize_nvfp4(w).state_dict()))
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_c_layer_checks_weight_views(x, qw):
    codes, scales, gs, _ = qw.c_weight()[2:6]
    with pytest.raises(ValueError, match="weight.scales: expected shape \\[32, 4\\], got \\[32, 3\\]"):
        _C.gemm(x, (_C.FORMAT_NVFP4, 16, codes, np.ascontiguousarray(qw.scales[:, :3]).view(np.uint8), gs, None, 0), None, 1.0,
                np.empty((4, 32), np.float32), None, -1, None)
    with pytest.raises(ValueError, match="weight.group_size"):
        _C.gemm(x, (_C.FORMAT_NVFP4, 32, codes, scales, gs, None, 0), None, 1.0, np.empty((4, 32), np.float32), None, -1, None)
    with pytest.raises(ValueError, match="weight.format"):
        _C.gemm(x, (9, 16, codes, scales, gs, None, 0), None, 1.0, np.empty((4, 32), np.float32), None, -1, None)
    with pytest.raises(TypeError, match="weight.codes: expected dtype uint8"):
        _C.gemm(x, (_C.FORMAT_NVFP4, 16, codes.astype(np.float32), scales, gs, None, 0), None, 1.0,
                np.empty((4, 32), np.float32), None, -1, None)


def test_failed_call_writes_nothing(w):
    codes = np.full((32, 32), 0xAB, np.uint8)
    scales = np.full((32, 4), 0xCD, np.uint8)
    gs = np.full(1, 3.0, np.float32)
    bad = w.copy()
    bad[31, 63] = np.nan  # the last element: the check must run before any write
    with pytest.raises(ValueError, match="NaN at \\[31, 63\\]"):
        _C.quantize_nvfp4(bad, codes, scales, gs, None, None)
    assert (codes == 0xAB).all() and (scales == 0xCD).all() and gs[0] == 3.0
