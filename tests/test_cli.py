"""python -m w4a16: info prints the build facts; errors are one line, not a traceback."""

import json
import subprocess
import sys

import pytest

import w4a16


def run_cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "w4a16", *args], capture_output=True, text=True, check=True)
    return done.stdout


def test_info_prints_build_facts():
    text = run_cli("info")
    facts = w4a16.build_info()
    assert f"w4a16 {w4a16.__version__}" in text
    assert ("CUDA kernels: on" in text) == facts["cuda"]
    for name in ("nvfp4", "mxfp4", "int4"):
        assert name in text
    for arch in facts["cuda_archs"]:
        assert arch in text
    assert ("GPU 0:" in text) == bool(facts["devices"])


def test_default_architectures_include_thor_and_hopper():
    # the build's default list (CMakeLists.txt) covers SM80..SM120, Jetson Thor's sm_110 too
    import pathlib

    cmake = pathlib.Path(__file__).resolve().parents[1] / "CMakeLists.txt"
    default = [line for line in cmake.read_text().splitlines() if "W4A16_DEFAULT_ARCHS" in line][0]
    for arch in ("80", "86", "87", "89", "90", "100", "110", "120"):
        assert arch in default


def test_info_json_is_parseable():
    facts = json.loads(run_cli("info", "--json"))
    assert facts["version"] == w4a16.__version__
    assert isinstance(facts["cuda"], bool) and isinstance(facts["devices"], list)


def test_tune_without_a_gpu_says_so_in_one_line():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: tune runs")
    done = subprocess.run([sys.executable, "-m", "w4a16", "tune", "--shapes", "256x128"], capture_output=True,
                          text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == "python -m w4a16 tune: error: w4a16.tune: needs a CUDA GPU"
