"""prepack / unprepack, the layout attribute, modules holding prepacked codes, and the
tuning cache's file handling (CPU; the GPU side is in test_gpu_gemm_tc.py)."""

import json
import warnings

import numpy as np
import pytest

import w4a16
from w4a16 import tuning

torch = pytest.importorskip("torch")


# Where bits 0, 1, 2, 3 of the code in slot j go (the quantize.prepack docstring), as bits
# of the 32-bit word for the element in its low half; the element in the high half uses
# the same positions plus 16, modulo 32. INT4 nibble j; E2M1 slot 0 magnitude at 6..8 and
# sign at 15, slots 1 and 2 that pattern rotated left by 3 and 6, slot 3 the bits left over.
SLOT_BITS = {
    "int4": [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11), (12, 13, 14, 15)],
    "e2m1": [(6, 7, 8, 15), (9, 10, 11, 18), (12, 13, 14, 21), (3, 4, 0, 1)],
}


def prepack_oracle(codes: np.ndarray, kind: str) -> np.ndarray:
    """Independent statement of the order: a row is cut into chunks of 32 elements (the
    last may hold 8, 16 or 24); in a chunk of W words, pair p (elements 2p, 2p + 1) goes to
    slot j = p // W of word p % W, element 2p as the low and 2p + 1 as the high half, bit by
    bit as SLOT_BITS[kind][j] says (code element e = nibble e of the canonical row)."""
    n, half = codes.shape
    k = 2 * half
    nibbles = np.empty((n, k), np.uint32)
    nibbles[:, 0::2], nibbles[:, 1::2] = codes & 0xF, codes >> 4
    words = np.zeros((n, k // 8), np.uint32)  # the prepacked row's little-endian words
    for base in range(0, k, 32):
        chunk_words = min(32, k - base) // 8
        for e in range(8 * chunk_words):
            p = e // 2
            w = base // 8 + p % chunk_words
            for bit, pos in enumerate(SLOT_BITS[kind][p // chunk_words]):
                words[:, w] |= ((nibbles[:, base + e] >> bit) & 1) << ((pos + 16 * (e % 2)) % 32)
    return words.astype("<u4").view(np.uint8).reshape(n, half)


@pytest.mark.parametrize("make,kind,k", [(w4a16.quantize_nvfp4, "e2m1", 96), (w4a16.quantize_nvfp4, "e2m1", 48),
                                         (w4a16.quantize_nvfp4, "e2m1", 112), (w4a16.quantize_nvfp4, "e2m1", 16),
                                         (w4a16.quantize_mxfp4, "e2m1", 96),
                                         (lambda w: w4a16.pack_int4(w, None), "int4", 96),
                                         (lambda w: w4a16.pack_int4(w, None), "int4", 40),
                                         (lambda w: w4a16.pack_int4(w, None), "int4", 56)])
def test_prepack_matches_oracle_and_round_trips(rng, make, kind, k):
    """Whole chunks (K = 96) and a last chunk of 1, 2 or 3 words (K = 40, 48 / 112, 56) or
    only that (16)."""
    qw = make(rng.standard_normal((24, k)).astype(np.float32))
    packed = w4a16.prepack(qw)
    assert packed.layout == "prepacked" and qw.layout == "canonical"
    assert np.array_equal(packed.codes, prepack_oracle(qw.codes, kind))
    assert not np.array_equal(packed.codes, qw.codes)  # random codes: the order really changes
    assert np.array_equal(w4a16.unprepack(packed).codes, qw.codes)
    assert w4a16.prepack(packed) is packed and qw.canonical() is qw


def _mxfp4_with_codes(codes: np.ndarray) -> w4a16.QuantizedWeight:
    n, k = codes.shape[0], 2 * codes.shape[1]
    return w4a16.QuantizedWeight("mxfp4", (n, k), 32, codes, np.zeros((n, max(1, k // 32)), np.uint8))


def _int4_with_codes(codes: np.ndarray) -> w4a16.QuantizedWeight:
    k = 2 * codes.shape[1]
    return w4a16.QuantizedWeight("int4", (1, k), k, codes, np.ones((1, 1), np.float16))


def test_hand_worked_int4_word():
    # a row of one word (K = 8): canonical bytes 0x10 0x32 0x54 0x76 hold elements 0..7 =
    # codes 0..7; nibbles 0..3 <- elements 0, 2, 4, 6; nibbles 4..7 <- elements 1, 3, 5, 7
    codes = np.array([[0x10, 0x32, 0x54, 0x76]], np.uint8)
    assert w4a16.prepack(_int4_with_codes(codes)).codes.tolist() == [[0x20, 0x64, 0x31, 0x75]]


def test_hand_worked_e2m1_word():
    # the same word as E2M1 codes: element e in slot e // 2 of half e % 2. The low half's
    # elements 0, 2, 4, 6 = codes 0, 2, 4, 6: slot 1 code 2 -> bit 10, slot 2 code 4 -> bit
    # 14, slot 3 code 6 -> bits 4 and 0. The high half's codes 1, 3, 5, 7 at those places
    # plus 16: slot 0 bit 22, slot 1 bits 25 and 26, slot 2 bits 28 and 30, slot 3 bits 19,
    # 20 and 16. Word 0x56594411. With codes 8..15 instead (the second row) every sign is
    # set: the low half's at 15, 18, 21 and 1, the high half's at 31, 2, 5 and 17, which
    # adds 0x80268026: 0xD67FC437.
    codes = np.array([[0x10, 0x32, 0x54, 0x76], [0x98, 0xBA, 0xDC, 0xFE]], np.uint8)
    expected = [[0x11, 0x44, 0x59, 0x56], [0x37, 0xC4, 0x7F, 0xD6]]
    assert w4a16.prepack(_mxfp4_with_codes(codes)).codes.tolist() == expected


def test_hand_worked_int4_chunk():
    # a whole chunk, element e = code e % 16 (canonical bytes 0x10, 0x32, ..., 0xFE twice).
    # Word 0 holds the pairs at elements 0, 8, 16, 24 in slots 0..3: nibbles 0..3 = codes
    # 0, 8, 0, 8 and nibbles 4..7 = 1, 9, 1, 9 -> bytes 0x80 0x80 0x91 0x91; word t likewise
    # from elements 2t + 8j.
    codes = np.array([[0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE] * 2], np.uint8)
    expected = [0x80, 0x80, 0x91, 0x91, 0xA2, 0xA2, 0xB3, 0xB3, 0xC4, 0xC4, 0xD5, 0xD5, 0xE6, 0xE6, 0xF7, 0xF7]
    assert w4a16.prepack(_int4_with_codes(codes)).codes.tolist() == [expected]


@pytest.mark.parametrize("make,k", [(w4a16.quantize_nvfp4, 128), (w4a16.quantize_mxfp4, 128),
                                    (lambda w: w4a16.pack_int4(w, 32, symmetric=False), 128),
                                    (w4a16.quantize_nvfp4, 80), (lambda w: w4a16.pack_int4(w, None), 56)])
def test_prepacked_weight_dequantizes_and_multiplies_like_canonical(rng, make, k):
    """Also with a last chunk of 2 (K = 80) or 3 words (K = 56)."""
    w = rng.standard_normal((40, k)).astype(np.float32)
    qw = make(w)
    packed = w4a16.prepack(qw)
    assert np.array_equal(w4a16.dequantize(packed), w4a16.dequantize(qw))
    x = rng.standard_normal((3, k)).astype(np.float32)
    assert np.array_equal(w4a16.gemm(x, packed), w4a16.gemm(x, qw))
    assert all(np.array_equal(a, b) for a, b in zip(packed.state_dict().values(), qw.state_dict().values()))


def test_prepack_rejects_bad_input(rng):
    with pytest.raises(TypeError, match="qw"):
        w4a16.prepack(np.zeros((4, 4), np.uint8))
    qw = w4a16.quantize_nvfp4(rng.standard_normal((4, 32)).astype(np.float32))
    with pytest.raises(ValueError, match="layout"):
        w4a16.prepack(qw.__class__(**{**qw.__dict__, "layout": "swizzled"}))
    with pytest.raises(ValueError, match="codes: expected \\[N, K/2\\] with K a multiple of 8"):
        w4a16._C.prepack(w4a16._C.FORMAT_NVFP4, np.zeros((2, 6), np.uint8), np.zeros((2, 6), np.uint8), True, None)
    buf = np.zeros((2, 8), np.uint8)
    with pytest.raises(ValueError, match="out.*overlaps"):
        w4a16._C.prepack(w4a16._C.FORMAT_NVFP4, buf, buf, True, None)
    with pytest.raises(ValueError, match="format: expected nvfp4, mxfp4 or int4"):
        w4a16._C.prepack(7, np.zeros((2, 8), np.uint8), np.zeros((2, 8), np.uint8), True, None)


def test_module_holds_prepacked_codes_and_saves_canonical(rng):
    linear = torch.nn.Linear(64, 24).to(torch.bfloat16)
    module = w4a16.FP4Linear.from_linear(linear)
    canonical = w4a16.quantize_nvfp4(linear.weight.detach())
    assert torch.equal(module.weight, w4a16.prepack(canonical).codes)
    state = module.state_dict()
    assert torch.equal(state["weight"], canonical.codes)
    assert torch.equal(module.quantized_weight().codes, canonical.codes)
    fresh = w4a16.FP4Linear(64, 24, device="meta")
    fresh.load_state_dict(state, assign=True)
    assert torch.equal(fresh.weight, module.weight)
    x = torch.randn(5, 64, dtype=torch.bfloat16)
    assert torch.equal(fresh(x), module(x))
    assert torch.equal(state["weight"], canonical.codes)  # loading did not touch the caller's tensors


def test_corrupt_or_stale_cache_is_ignored_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("W4A16_CACHE_DIR", str(tmp_path))
    tuning.forget()
    path = tuning.cache_path("Some GPU")
    path.write_text("{ not json")
    with pytest.warns(RuntimeWarning, match="ignoring the tuning cache"):
        assert tuning.lookup("Some GPU", "nvfp4", "bfloat16", "prepacked", 256, 512, 8) == w4a16._C.GEMM_AUTO
    tuning.forget()
    stale = {"schema": 1, "version": "0.0.0-old", "gpu": "Some GPU", "entries": {}}
    path.write_text(json.dumps(stale))
    with pytest.warns(RuntimeWarning, match="another schema, library version or GPU"):
        tuning.lookup("Some GPU", "nvfp4", "bfloat16", "prepacked", 256, 512, 8)
    tuning.forget()
    unknown = {"schema": 1, "version": w4a16.__version__, "gpu": "Some GPU",
               "entries": {"nvfp4/bfloat16/prepacked/256x512/m8": {"config": "tc_no_such_tile"}}}
    path.write_text(json.dumps(unknown))
    with pytest.warns(RuntimeWarning, match="tc_no_such_tile"):
        tuning.lookup("Some GPU", "nvfp4", "bfloat16", "prepacked", 256, 512, 8)
    tuning.forget()


@pytest.mark.skipif(len(w4a16.gemm_configs()) < 3, reason="needs a build with CUDA kernels")
def test_cache_lookup_picks_the_next_tuned_m(tmp_path, monkeypatch):
    monkeypatch.setenv("W4A16_CACHE_DIR", str(tmp_path))
    tuning.forget()
    names = w4a16.gemm_configs()
    entries = {f"nvfp4/bfloat16/prepacked/256x512/m{m}": {"config": names[i]} for m, i in [(1, 0), (32, 1), (128, 2)]}
    tuning.cache_path("Some GPU").write_text(json.dumps({"schema": 1, "version": w4a16.__version__, "gpu": "Some GPU",
                                                        "entries": entries}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        look = lambda m: tuning.lookup("Some GPU", "nvfp4", "bfloat16", "prepacked", 256, 512, m)  # noqa: E731
        assert [look(m) for m in (1, 2, 32, 33, 128, 4000)] == [0, 1, 1, 2, 2, 2]
        assert tuning.lookup("Some GPU", "mxfp4", "bfloat16", "prepacked", 256, 512, 8) == w4a16._C.GEMM_AUTO
    tuning.forget()


@pytest.mark.parametrize("weight_bytes", [500_000, 2_359_296, 4_718_592, 18_874_368, 120_000_000])
@pytest.mark.parametrize("l2_bytes", [4 << 20, 50 << 20, 60 << 20])
def test_tuner_rotates_weights_past_twice_the_l2_cache(weight_bytes, l2_bytes):
    """The copies a tuning timing rotates through hold at least 2x the L2 cache (so every
    call reads its weight from DRAM), down to weights where the 256-copy bound binds, and
    not many more than needed. 2_359_296 bytes: the nvfp4 4096x1024 expert weight."""
    copies = tuning._weight_copies(weight_bytes, l2_bytes)
    assert 1 <= copies <= 256
    if weight_bytes * 256 >= 2 * l2_bytes:
        assert copies * weight_bytes >= 2 * l2_bytes
        assert (copies - 1) * weight_bytes < 2 * l2_bytes or copies == 1
    else:
        assert copies == 256


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_tune_without_a_gpu_says_so():
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        w4a16.tune([(256, 512)], ms=[1])


@pytest.mark.parametrize("arguments, words", [
    (dict(shapes=[(256, 100)]), ["shapes", "K = 100", "nvfp4", "16"]),
    (dict(shapes=[(256, 320)], formats="int4"), ["K = 320", "int4", "128"]),
    (dict(shapes=[256]), ["shapes", "(N, K) pairs"]),
    (dict(shapes=[(256, 512)], ms=[0]), ["ms", "positive"]),
    (dict(shapes=[(256, 512)], formats="fp8"), ["formats", "'fp8'"]),
    (dict(shapes=[(256, 512)], repeats=0), ["repeats"]),
    (dict(shapes=[(256, 512)], dtype="float32"), ["dtype"]),
])
def test_tune_checks_its_arguments_before_any_gpu_work(arguments, words):
    # (a valid call reaches the GPU check: test_tune_without_a_gpu_says_so)
    with pytest.raises(ValueError) as info:
        w4a16.tune(**arguments)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
