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
