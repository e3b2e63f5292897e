"""Framework-neutral array helpers: where an array lives, what it holds, and how to
allocate outputs in the caller's framework (numpy in -> numpy out, torch in -> torch out).

The C extension reads any object with ``__dlpack__``; this module decides the outputs.
Supported frameworks for outputs: torch, numpy, cupy and jax (jax on the CPU).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _C

Array = Any  # a torch.Tensor, numpy.ndarray, cupy.ndarray or jax.Array

DLPACK_CPU = 1
DLPACK_CUDA = 2

FLOAT_DTYPES = ("float32", "float16", "bfloat16")
HALF_DTYPES = ("float16", "bfloat16")

try:  # numpy has no bfloat16 / float8 of its own; ml_dtypes adds them
    import ml_dtypes as _ml_dtypes
except ImportError:  # pragma: no cover - exercised only without ml_dtypes
    _ml_dtypes = None

# numpy storage dtypes that DLPack cannot describe, passed to C as raw bits + real dtype
_NUMPY_REINTERPRET = {
    "bfloat16": (np.uint16, _C.DTYPE_BFLOAT16),
    "float8_e4m3fn": (np.uint8, _C.DTYPE_FLOAT8_E4M3FN),
}


def framework_of(obj: Array, name: str) -> str:
    """'torch', 'numpy', 'cupy' or 'jax'; TypeError for anything else."""
    module = type(obj).__module__.split(".")[0]
    if module in ("torch", "numpy", "cupy"):
        return module
    if module in ("jax", "jaxlib"):
        return "jax"
    if hasattr(obj, "__dlpack__"):
        raise TypeError(f"{name}: arrays of type {type(obj).__name__} are not supported; "
                        "use torch, numpy, cupy or jax")
    raise TypeError(f"{name}: expected an array (torch, numpy, cupy or jax), got {type(obj).__name__}")


def device_of(obj: Array) -> tuple[int, int]:
    """The DLPack (device_type, device_id) of an array."""
    device_type, device_id = obj.__dlpack_device__()
    return int(device_type), int(device_id)


def dtype_name(obj: Array) -> str:
    """'float32', 'bfloat16', 'float8_e4m3fn', ... for any supported framework."""
    dtype = obj.dtype
    if type(obj).__module__.split(".")[0] == "torch":
        return str(dtype).removeprefix("torch.")
    return np.dtype(dtype).name if not hasattr(dtype, "name") else str(dtype.name)


def shape_of(obj: Array) -> tuple[int, ...]:
    return tuple(int(d) for d in obj.shape)


def is_c_contiguous(obj: Array) -> bool:
    framework = framework_of(obj, "array")
    if framework == "torch":
        return bool(obj.is_contiguous())
    if framework in ("numpy", "cupy"):
        return bool(obj.flags.c_contiguous)
    return True  # jax arrays are always dense row-major


def is_positive_int(value: Any) -> bool:
    """An int above zero (not a bool, which Python counts as an int)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_input(obj: Array, name: str, dtypes: tuple[str, ...] | None = None, ndim: int | None = None) -> None:
    """Raises a clear exception for inputs w4a16 cannot take, before any work is done."""
    framework_of(obj, name)
    if getattr(obj, "requires_grad", False):
        raise ValueError(f"{name}: requires grad; w4a16 does not propagate gradients, pass {name}.detach()")
    if dtypes is not None and dtype_name(obj) not in dtypes:
        raise TypeError(f"{name}: expected dtype {' or '.join(dtypes)}, got {dtype_name(obj)}")
    if isinstance(obj, np.ndarray) and not obj.dtype.isnative:
        raise ValueError(f"{name}: has non-native byte order ({obj.dtype.str}), which DLPack cannot share; "
                         "use a native one (array.astype(array.dtype.newbyteorder('=')))")
    if ndim is not None and len(shape_of(obj)) != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {list(shape_of(obj))}")
    if not is_c_contiguous(obj):
        raise ValueError(f"{name}: must be C-contiguous (row-major); make a contiguous copy first "
                         "(tensor.contiguous() or numpy.ascontiguousarray)")
    try:
        device_type, _ = device_of(obj)
    except (ValueError, TypeError, BufferError, RuntimeError) as err:
        raise ValueError(f"{name}: its device cannot be shared through DLPack ({err}); use a CPU or CUDA array") from err
    if device_type not in (DLPACK_CPU, DLPACK_CUDA):
        raise ValueError(f"{name}: lives on DLPack device type {device_type}; w4a16 runs on CPU or CUDA")


def for_c(obj: Array | None) -> Any:
    """What the C extension is given for an array: the array itself, or for numpy
    dtypes DLPack cannot name (ml_dtypes bfloat16 / float8) a (raw view, dtype) pair."""
    if obj is None:
        return None
    if isinstance(obj, np.ndarray) and obj.dtype.name in _NUMPY_REINTERPRET:
        storage, code = _NUMPY_REINTERPRET[obj.dtype.name]
        return (obj.view(storage), code)
    if isinstance(obj, np.ndarray) and obj.ndim == 0:
        return obj.reshape(1)  # numpy cannot export some 0-d arrays; a 1-element view is the same bytes
    return obj


def cuda_stream(obj: Array) -> int | None:
    """The stream to launch on for a CUDA array: the framework's current stream."""
    if device_of(obj)[0] != DLPACK_CUDA:
        return None
    framework = framework_of(obj, "array")
    if framework == "torch":
        import torch

        return int(torch.cuda.current_stream(obj.device).cuda_stream)
    if framework == "cupy":
        import cupy

        return int(cupy.cuda.get_current_stream().ptr)
    return None


def _numpy_dtype(name: str) -> Any:
    if name in ("float32", "float16", "uint8"):
        return np.dtype(name)
    if _ml_dtypes is None:
        if name == "float8_e4m3fn":
            return np.dtype(np.uint8)  # the same bytes, without the dtype's name
        raise TypeError(f"numpy arrays of {name} need the ml_dtypes package (pip install ml_dtypes)")
    return np.dtype(getattr(_ml_dtypes, name))


def empty_like_framework(like: Array, shape: tuple[int, ...], dtype: str) -> Array:
    """An uninitialised array of `shape` and `dtype` in `like`'s framework and device."""
    framework = framework_of(like, "array")
    device_type, device_id = device_of(like)
    if framework == "torch":
        import torch

        return torch.empty(shape, dtype=getattr(torch, dtype), device=like.device)
    if framework == "cupy":
        import cupy

        with cupy.cuda.Device(device_id):
            return cupy.empty(shape, dtype=_numpy_dtype(dtype))
    if framework == "jax" and device_type != DLPACK_CPU:
        raise NotImplementedError("jax arrays on a GPU are not supported yet; use torch or cupy there")
    return np.empty(shape, dtype=_numpy_dtype(dtype))  # numpy, and jax on the CPU (converted back later)


def to_framework_of(like: Array, result: Array) -> Array:
    """Hands a result computed in numpy back as `like`'s framework where they differ (jax)."""
    if framework_of(like, "array") == "jax":
        import jax.numpy as jnp

        return jnp.asarray(result)
    return result


def scalar_f32(like: Array) -> Array:
    """An uninitialised 0-d float32 array in `like`'s framework and device."""
    return empty_like_framework(like, (), "float32")


