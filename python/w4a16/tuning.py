"""Kernel tuning: time every CUDA gemm configuration on this GPU for given shapes and keep
the fastest in a JSON cache that later processes use.

    >>> import w4a16
    >>> w4a16.tune([(16384, 2048), (2048, 16384)], ms=[1, 16, 64, 968])   # doctest: +SKIP

The cache is one file per GPU name and library version, in ``$W4A16_CACHE_DIR`` or else
``$XDG_CACHE_HOME/w4a16`` (``~/.cache/w4a16``)::

    {"schema": 1, "version": "0.1.0", "gpu": "NVIDIA H100 80GB HBM3",
     "entries": {"nvfp4/bfloat16/prepacked/16384x2048/m64":
                 {"config": "tc_n128_m64_split1", "us": 9.8, "default_us": 10.1,
                  "timings_us": {...}}}}

``gemm`` (and the torch op behind FP4Linear / Int4Linear) looks a call up by format,
dtype, layout, N, K and M: an entry for that M, else the tuned M just above it (else the
largest tuned M); without an entry it uses the library's heuristic. A cache that cannot be
read, has another schema, version or GPU, or names configs this build lacks is ignored
with one warning, never an error.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import re
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Sequence

from . import _C
from ._arrays import is_positive_int
from .quantize import _scale_block

SCHEMA = 1
_FORMATS = {"nvfp4", "mxfp4", "int4"}
_MAX_COPIES = 256  # see _weight_copies
# In-process copy of each device's cache: {gpu name: {(format, dtype, layout, n, k): ([m...], [config...])}}
_loaded: dict[str, dict[tuple, tuple[list[int], list[int]]]] = {}


def _version() -> str:
    return _C.build_info()["version"]


def cache_dir() -> Path:
    """The directory holding tuning caches."""
    explicit = os.environ.get("W4A16_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "w4a16"


def cache_path(gpu_name: str) -> Path:
    """The cache file for a GPU name and this library version."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower() or "gpu"
    return cache_dir() / f"tuned-{slug}-{_version()}.json"


def _key(fmt: str, dtype: str, layout: str, n: int, k: int, m: int) -> str:
    return f"{fmt}/{dtype}/{layout}/{n}x{k}/m{m}"


def _parse_key(key: str) -> tuple[tuple, int]:
    fmt, dtype, layout, nk, m = key.split("/")
    n, k = nk.split("x")
    if fmt not in _FORMATS or not m.startswith("m"):
        raise ValueError(key)
    return (fmt, dtype, layout, int(n), int(k)), int(m[1:])


def _read(path: Path, gpu_name: str) -> dict[tuple, tuple[list[int], list[int]]]:
    """The lookup table of a cache file; {} (with a warning) if it is unusable."""
    if not path.exists():
        return {}
    names = _C.gemm_configs()
    try:
        data = json.loads(path.read_text())
        if data.get("schema") != SCHEMA or data.get("version") != _version() or data.get("gpu") != gpu_name:
            raise ValueError("it was written for another schema, library version or GPU")
        table: dict[tuple, dict[int, int]] = {}
        for key, entry in data["entries"].items():
            shape, m = _parse_key(key)
            if entry["config"] not in names:
                raise ValueError(f"it names config {entry['config']!r}, which this build does not have")
            table.setdefault(shape, {})[m] = names.index(entry["config"])
    except Exception as exc:  # a cache must never break a gemm: warn and run untuned
        warnings.warn(f"w4a16: ignoring the tuning cache {path}: {exc}", RuntimeWarning, stacklevel=3)
        return {}
    return {shape: (sorted(by_m), [by_m[m] for m in sorted(by_m)]) for shape, by_m in table.items()}


def _table(gpu_name: str) -> dict[tuple, tuple[list[int], list[int]]]:
    table = _loaded.get(gpu_name)
    if table is None:
        table = _loaded[gpu_name] = _read(cache_path(gpu_name), gpu_name)
    return table


_gpu_names: dict[int, str] = {}


def gpu_name(device_id: int) -> str:
    """The name of CUDA device `device_id` as the cache files use it."""
    name = _gpu_names.get(device_id)
    if name is None:
        names = {gpu["index"]: gpu["name"] for gpu in _C.build_info()["devices"]}
        name = _gpu_names[device_id] = names.get(device_id, "unknown")
    return name


def lookup(gpu_name: str, fmt: str, dtype: str, layout: str, n: int, k: int, m: int) -> int:
    """The tuned config index for a gemm, or _C.GEMM_AUTO when the cache has none."""
    entry = _table(gpu_name).get((fmt, dtype, layout, n, k))
    if entry is None:
        return _C.GEMM_AUTO
    ms, configs = entry
    i = bisect.bisect_left(ms, m)
    return configs[min(i, len(ms) - 1)]


def forget() -> None:
    """Drops the in-process copies of the caches (the next gemm re-reads the files)."""
    _loaded.clear()


def _weight_copies(weight_bytes: int, l2_bytes: int) -> int:
    """How many copies of a weight of `weight_bytes` a timing rotates through: together at
    least twice the L2 cache, so that every call reads its weight from DRAM as it does in a
    model much larger than L2 (the Pi0.5 expert weights, 2.4 MB, took 15 copies before:
    36 MB, less than an H100's 50 MB L2, so they were timed from L2). At most _MAX_COPIES:
    that bound only binds under 2 * L2 / 256 (0.4 MB on an H100), where the launch dominates."""
    return max(1, min(_MAX_COPIES, math.ceil(2 * l2_bytes / max(weight_bytes, 1))))


def _time_config(x, config: int, copies: list, repeats: int) -> float | None:
    """Median µs of one gemm with `config` over rotating weight copies, or None if the
    config cannot run this shape."""
    import torch

    from . import gemm
    from .timing import capture, replay_seconds

    out = torch.empty(x.shape[0], copies[0].shape[0], dtype=x.dtype, device=x.device)
    try:
        gemm(x, copies[0], out=out, config=config)
    except (RuntimeError, ValueError):
        return None

    def run() -> None:
        for weight in copies:
            gemm(x, weight, out=out, config=config)

    graph = capture(run)
    return replay_seconds(graph, repeats=repeats) / len(copies) * 1e6


def _check_tune_arguments(shapes: Iterable[tuple[int, int]], ms: Sequence[int], formats: Sequence[str], dtype: str,
                          repeats: int) -> tuple[list, list, list]:
    """tune's arguments as lists, or a clear exception (before any GPU work)."""
    formats = [formats] if isinstance(formats, str) else list(formats)
    for fmt in formats:
        if fmt not in _FORMATS:
            raise ValueError(f"formats: expected names from {sorted(_FORMATS)}, got {fmt!r}")
    shapes = list(shapes)
    for shape in shapes:
        if not (isinstance(shape, (tuple, list)) and len(shape) == 2 and all(is_positive_int(d) for d in shape)):
            raise ValueError(f"shapes: expected (N, K) pairs of positive ints, got {shape!r}")
        for fmt in formats:
            block = _scale_block(fmt, shape[1], 128)  # int4 is tuned with group 128
            if shape[1] % block:
                raise ValueError(f"shapes: K = {shape[1]} of {tuple(shape)} is not a multiple of {fmt}'s "
                                 f"block {block}")
    ms = list(ms)
    if not ms or not all(is_positive_int(m) for m in ms):
        raise ValueError(f"ms: expected positive row counts, got {ms!r}")
    if dtype not in ("float16", "bfloat16"):
        raise ValueError(f"dtype: expected 'float16' or 'bfloat16', got {dtype!r}")
    if not is_positive_int(repeats):
        raise ValueError(f"repeats: expected a positive int, got {repeats!r}")
    return shapes, ms, formats


def tune(shapes: Iterable[tuple[int, int]], ms: Sequence[int] = (1, 4, 16, 32, 64, 128, 256, 968),
         formats: Sequence[str] = ("nvfp4",), dtype: str = "bfloat16", device: int = 0,
         repeats: int = 20, save: bool = True, verbose: bool = False) -> dict[str, dict]:
    """Times every gemm config on GPU `device` for each (N, K) in `shapes`, M in `ms` and
    format, with prepacked weights (the layout FP4Linear / Int4Linear use), and stores the
    winners in the cache (merged with what is there). int4 is tuned with group 128.

    Weights rotate through copies that together exceed twice the L2 cache (_weight_copies),
    each timing is the median of `repeats` CUDA-graph replays. Returns the new entries:
    {key: {"config": name, "us": time, "default_us": time, "timings_us": {name: time}}},
    where default_us is the library's heuristic (no cache) timed in the same run, so that
    us / default_us says what tuning gains on this GPU.
    """
    import torch

    from .quantize import pack_int4, prepack, quantize_mxfp4, quantize_nvfp4

    shapes, ms, formats = _check_tune_arguments(shapes, ms, formats, dtype, repeats)
    if not torch.cuda.is_available():
        raise RuntimeError("w4a16.tune: needs a CUDA GPU")
    names = _C.gemm_configs()
    quantizers = {"nvfp4": quantize_nvfp4, "mxfp4": quantize_mxfp4, "int4": lambda w: pack_int4(w, 128)}
    torch_dtype = getattr(torch, dtype)
    dev = torch.device("cuda", device)
    name_of_gpu = gpu_name(device)
    l2 = getattr(torch.cuda.get_device_properties(dev), "L2_cache_size", 50 << 20)
    results: dict[str, dict] = {}
    with torch.cuda.device(dev):
        for n, k in shapes:
            for fmt in formats:
                w = torch.randn(n, k, device=dev, dtype=torch_dtype) * 0.05
                qw = prepack(quantizers[fmt](w))
                del w
                extra = _weight_copies(qw.nbytes, l2) - 1
                copies = [qw] + [replace(qw, codes=qw.codes.clone(), scales=qw.scales.clone()) for _ in range(extra)]
                for m in ms:
                    x = torch.randn(m, k, device=dev, dtype=torch_dtype)
                    timings = {}
                    for config, name in enumerate(names):
                        us = _time_config(x, config, copies, repeats)
                        if us is not None:
                            timings[name] = round(us, 3)
                    if not timings:
                        continue
                    best = min(timings, key=timings.get)
                    default = _time_config(x, _C.GEMM_AUTO, copies, repeats)
                    key = _key(fmt, dtype, "prepacked", n, k, m)
                    results[key] = {"config": best, "us": timings[best], "default_us": round(default, 3),
                                    "timings_us": timings}
                    if verbose:
                        print(f"{key}: {best} {timings[best]:.2f} us (heuristic {default:.2f} us)")
                del copies, qw
    if save:
        _save(name_of_gpu, results)
    return results


def _save(gpu_name: str, results: dict[str, dict]) -> Path:
    """Merges `results` into the GPU's cache file (written to a temporary name, then renamed)."""
    path = cache_path(gpu_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries: dict[str, dict] = {}
    if path.exists() and _read(path, gpu_name):  # keep what a valid cache already holds
        entries = json.loads(path.read_text())["entries"]
    entries.update(results)
    data = {"schema": SCHEMA, "version": _version(), "gpu": gpu_name, "entries": entries}
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)
    _loaded.pop(gpu_name, None)
    return path
