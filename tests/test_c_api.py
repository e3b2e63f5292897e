"""The installed C library and header: examples/c_api.c compiles against them and passes."""

import os
import pathlib
import shutil
import subprocess

import pytest

import w4a16

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "c_api.c"


def test_header_and_library_are_installed():
    assert os.path.isfile(os.path.join(w4a16.get_include(), "w4a16.h"))
    assert os.path.isfile(w4a16.get_library())


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_c_api_example_builds_and_passes(tmp_path):
    exe = tmp_path / "c_api"
    library = w4a16.get_library()
    subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", f"-I{w4a16.get_include()}", str(EXAMPLE), library,
                    f"-Wl,-rpath,{os.path.dirname(library)}", "-lm", "-o", str(exe)], check=True)
    done = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "c_api: OK" in done.stdout


def _cuda_home():
    nvcc = shutil.which("nvcc")
    return os.path.dirname(os.path.dirname(nvcc)) if nvcc else None


@pytest.mark.gpu
@pytest.mark.skipif(shutil.which("cc") is None or _cuda_home() is None, reason="needs a C compiler and the CUDA toolkit")
def test_c_api_example_on_the_gpu(tmp_path):
    cuda = _cuda_home()
    exe = tmp_path / "c_api_gpu"
    library = w4a16.get_library()
    subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", "-DW4A16_EXAMPLE_CUDA", f"-I{cuda}/include",
                    f"-I{w4a16.get_include()}", str(EXAMPLE), library, f"-Wl,-rpath,{os.path.dirname(library)}",
                    f"-L{cuda}/lib64", f"-Wl,-rpath,{cuda}/lib64", "-lcudart", "-lm", "-o", str(exe)], check=True)
    done = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "GPU bytes equal the CPU's" in done.stdout and "c_api: OK" in done.stdout
