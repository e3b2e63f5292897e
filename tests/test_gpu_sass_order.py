"""The machine code of the programmatic-dependent-launch kernels (SM90 on) reads nothing
the prior kernel may have written before its griddepcontrol.wait (SASS: ACQBULK).

The compiler is free to move loads it takes for invariant (__ldg, const __restrict__)
above the wait; the NVFP4 quantizer once read its global scale that way and produced
wrong codes on large tensors. This test reads the SASS of the built extension with
cuobjdump (skipped where there is none, or no CUDA build). Rules:
- the matmul kernels and the quantizer's finalize kernel load nothing before the wait
  (their only earlier memory operations are L2 prefetches, which cannot be stale);
- nvfp4_kernel loads exactly one 16-element block of its input w before it (w is the
  caller's tensor, which the kernels before it on the stream only read).
"""

import re
import shutil
import subprocess

import pytest

import w4a16

pytestmark = pytest.mark.gpu

LOAD = re.compile(r"^(?:@!?U?P\w+\s+)?(LDG|LD|LDGSTS|ATOM|ATOMG|RED)\b(\S*)")  # global reads
WIDTHS = {".128": 16, ".64": 8, ".U16": 2, ".S16": 2, ".U8": 1, ".S8": 1}


def sass_functions() -> dict[str, list[str]]:
    """Function name -> instructions, from cuobjdump -sass of the extension module."""
    tool = shutil.which("cuobjdump")
    if tool is None or not w4a16.build_info()["cuda"]:
        pytest.skip("needs cuobjdump and a CUDA build")
    text = subprocess.run([tool, "-sass", w4a16._C.__file__], capture_output=True, text=True, check=True).stdout
    functions = {}
    for chunk in re.split(r"\n\s*Function : ", text)[1:]:
        name, body = chunk.split("\n", 1)
        ops = [m.group(1).strip() for m in re.finditer(r"/\*[0-9a-f]{4}\*/\s+([^;]*);", body)]
        functions[name.strip()] = ops
    return functions


def loads_before_wait(ops: list[str]) -> list[str] | None:
    """The memory reads before the first ACQBULK, or None when there is no ACQBULK."""
    wait = next((i for i, op in enumerate(ops) if op.split()[-1] == "ACQBULK" or op == "ACQBULK"), None)
    if wait is None:
        return None
    return [op for op in ops[:wait] if LOAD.match(op)]


def load_bytes(op: str) -> int:
    suffix = LOAD.match(op).group(2)
    return next((b for s, b in WIDTHS.items() if s in suffix), 4)


def test_pdl_kernels_load_nothing_written_before_the_wait():
    functions = sass_functions()
    checked = 0
    for name, ops in functions.items():
        before = loads_before_wait(ops)
        if before is None:
            continue
        checked += 1
        if "nvfp4_kernel" in name:
            element = 4 if "nvfp4_kernelIf" in name else 2  # float or a 16-bit type
            assert sum(load_bytes(op) for op in before) == 16 * element, (name, before)
        else:
            assert before == [], (name, before)
    # every PDL kernel family was seen: gemv, the tensor-core kernels, split-K reduce, quantizer
    families = ["gemv_w4_kernel", "gemm_tc_kernel", "gemm_tc_decoded_kernel", "reduce_split_k", "nvfp4_kernel",
                "nvfp4_finalize_kernel"]
    if "sm_90" in w4a16.build_info()["cuda_archs"]:
        families.append("gemm_wgmma_kernel")  # built for sm_90a only
    for family in families:
        assert any(family in name and loads_before_wait(ops) is not None for name, ops in functions.items()), family
    assert checked > 0
