"""Build facts: version, CUDA on/off, architectures, visible GPUs, formats."""

from __future__ import annotations

import os
import platform
from typing import Any

from . import _C

FORMATS = {
    "nvfp4": "E2M1 codes, E4M3 scales per 16, fp32 global scale",
    "mxfp4": "E2M1 codes, E8M0 scales per 32 (OCP MX)",
    "int4": "int4 codes, fp16/bf16 scales per 32/64/128/K, optional zero points",
}


def build_info() -> dict[str, Any]:
    """A dict: version, cuda (bool), cuda_archs (list of sm numbers), cuda_runtime
    (e.g. "13.0" or None), devices (name, capability, memory), formats, python."""
    raw = _C.build_info()
    runtime = raw["cuda_runtime"]
    return {
        "version": raw["version"],
        "cuda": raw["cuda"],
        "cuda_archs": [f"sm_{a}" for a in raw["cuda_archs"].split(",") if a],
        "cuda_runtime": f"{runtime // 1000}.{runtime % 1000 // 10}" if runtime else None,
        "devices": raw["devices"],
        "formats": FORMATS,
        "python": platform.python_version(),
    }


def format_info(info: dict[str, Any]) -> str:
    """The text `python -m w4a16 info` prints."""
    lines = [
        f"w4a16 {info['version']} (Python {info['python']})",
        f"CUDA kernels: {'on' if info['cuda'] else 'off'}"
        + (f" (runtime {info['cuda_runtime']}; architectures {', '.join(info['cuda_archs'])})" if info["cuda"] else
           " (CPU build)"),
    ]
    if info["devices"]:
        for d in info["devices"]:
            major, minor = d["capability"]
            lines.append(f"GPU {d['index']}: {d['name']} (sm_{major}{minor}, {d['memory_bytes'] / 2**30:.1f} GiB)")
    else:
        lines.append("GPUs: none visible" + ("" if info["cuda"] else " (not looked for: CPU build)"))
    lines.append("formats:")
    lines.extend(f"  {name:6s} {text}" for name, text in info["formats"].items())
    return "\n".join(lines)


def get_include() -> str:
    """Directory holding w4a16.h, the C API (for -I)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")


def get_library() -> str:
    """Path of libw4a16.so, the C library of the same build (for linking plugins)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib", "libw4a16.so")
