"""examples/pi05_mlp.py runs (its reduced CPU size without a GPU) and its flags pick what it times."""

import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("torch")

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "pi05_mlp.py"


def run_example(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLE), *flags], capture_output=True, text=True, timeout=300)


def test_expert_stack_rows_for_the_chosen_formats():
    done = run_example("--stacks", "expert", "--formats", "nvfp4,int4")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("action expert step")]
    # the title's three words, then M, format, ms, speedup, MiB, MLP err, stack err
    assert [(r[3], r[4]) for r in rows] == [(m, f) for m in ("10", "50") for f in ("bf16", "nvfp4", "int4")]
    assert not any(line.startswith("Gemma-2B prefix") for line in done.stdout.splitlines())
    for r in rows:
        ms, mib, mlp_err = float(r[5]), float(r[7]), float(r[8])
        assert ms > 0
        if r[4] == "bf16":
            assert mlp_err == 0.0
            bf16_mib = mib
        else:
            # 4-bit weights: a few times smaller than bf16's, and an MLP output off by a few
            # percent to a few tens of percent on random weights, never exact
            assert mib < bf16_mib / 3
            assert 0.01 < mlp_err < 0.5


@pytest.mark.parametrize("flags", [("--stacks", "vision"), ("--formats", "nvfp4,fp8"), ("--formats", "")])
def test_unknown_stack_or_format_is_refused(flags):
    done = run_example(*flags)
    assert done.returncode == 2
    assert f"{flags[0]}: expected a comma-separated subset of" in done.stderr
