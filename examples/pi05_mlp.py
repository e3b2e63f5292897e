"""Pi0.5's MLP stacks, bf16 against each 4-bit format: time and accuracy.

Pi0.5 runs a Gemma-2B language model (hidden 2048 -> MLP 16384, 18 layers) once per
inference over the prefix (3 images x 256 tokens + 200 text tokens = M 968), and a
Gemma-300M action expert (1024 -> 4096, 18 layers) on every denoising step over the
action horizon (M = 10 or 50). This script builds both MLP stacks with random weights,
patches copies with w4a16.patch_mlp, and prints per stack and format: the MLP time of one
pass (CUDA-graph replay, median of repeats), the speedup over bf16, the weight memory, the
relative error of one MLP's output and of the whole stack's output against bf16 (random
weights have no structure to protect, so the stack error compounds over 18 layers).

On a machine without a GPU it runs 2 layers at a quarter of the width and says so.
With --compile it also times each stack through torch.compile (static shapes), which fuses
the RMS norm, the activation, the product and the residual into a few kernels, as a
deployment would; the speedup column then compares compiled with compiled bf16.

    python examples/pi05_mlp.py [--compile] [--stacks prefix,expert] [--formats nvfp4,mxfp4,int4]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

import w4a16
from w4a16.timing import capture, replay_seconds

FORMATS = ("nvfp4", "mxfp4", "int4")


class GemmaMLP(nn.Module):
    """The Gemma MLP: down(gelu_tanh(gate(x)) * up(x)), no biases."""

    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)
        self.act_fn = nn.GELU(approximate="tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class MLPStack(nn.Module):
    """The MLPs of a decoder with their pre-MLP RMS norm and residual connections, so that
    errors accumulate as in the model (attention left out)."""

    def __init__(self, hidden: int, intermediate: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(GemmaMLP(hidden, intermediate) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for mlp in self.layers:
            normed = x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(x.dtype)
            x = x + mlp(normed)
        return x


def seconds_per_pass(model: nn.Module, x: torch.Tensor, repeats: int = 20) -> float:
    with torch.no_grad():
        if x.is_cuda:
            return replay_seconds(capture(lambda: model(x)), repeats)
        model(x)
        times = []
        for _ in range(max(3, repeats // 5)):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
        return statistics.median(times)


def compiled_seconds_per_pass(model: nn.Module, x: torch.Tensor) -> float:
    """seconds_per_pass of torch.compile(model) for x's shape (compiled on the first call).
    The stacks share one forward, so the compiler's caches are cleared first: otherwise the
    ninth model-and-shape would pass its recompile limit and run eager without a word."""
    torch.compiler.reset()
    compiled = torch.compile(model, dynamic=False)
    with torch.no_grad():
        compiled(x)
    return seconds_per_pass(compiled, x)


def weight_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true", help="also time the stacks through torch.compile")
    parser.add_argument("--stacks", default="prefix,expert", help="which stacks: prefix, expert or both")
    parser.add_argument("--formats", default=",".join(FORMATS), help="4-bit formats to compare with bf16")
    args = parser.parse_args()
    for name, allowed in (("stacks", ("prefix", "expert")), ("formats", FORMATS)):
        chosen = getattr(args, name).split(",")
        if any(c not in allowed for c in chosen):
            parser.error(f"--{name}: expected a comma-separated subset of {', '.join(allowed)}")
        setattr(args, name, chosen)
    return args


def main() -> None:
    args = parse_args()
    cuda = torch.cuda.is_available() and w4a16.build_info()["cuda"]
    device = "cuda" if cuda else "cpu"
    scale = 1 if cuda else 4
    layers = 18 if cuda else 2
    stacks = [("Gemma-2B prefix", 2048 // scale, 16384 // scale, (968,)),
              ("action expert step", 1024 // scale, 4096 // scale, (10, 50))]
    stacks = [s for s, key in zip(stacks, ("prefix", "expert")) if key in args.stacks]
    print(f"device: {torch.cuda.get_device_name(0) if cuda else 'CPU'}; {layers} layers per stack"
          + ("" if cuda else f"; reduced CPU run: widths / {scale}, 2 layers (a GPU runs Pi0.5's real sizes)"))
    print(f"{'stack':20s} {'M':>4s} {'format':7s} {'ms':>8s} {'vs bf16':>8s} {'MiB':>8s} {'MLP err':>8s} "
          f"{'stack err':>9s}" + (f" {'compiled':>8s} {'vs bf16':>8s}" if args.compile else ""))
    torch.manual_seed(0)
    for title, hidden, intermediate, batches in stacks:
        reference = MLPStack(hidden, intermediate, layers)
        for mlp in reference.layers:  # Gemma-like init scale
            for lin in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
                nn.init.normal_(lin.weight, std=0.02)
        reference = reference.to(device, torch.bfloat16).eval()
        patched = {}
        for fmt in args.formats:
            model = copy.deepcopy(reference)
            w4a16.patch_mlp(model, format=fmt)
            patched[fmt] = model
        for m in batches:
            x = torch.randn(m, hidden, device=device, dtype=torch.bfloat16)
            with torch.no_grad():
                ref_out = reference(x).double()
                ref_mlp = reference.layers[0](x).double()
            t_ref = seconds_per_pass(reference, x)
            tc_ref = compiled_seconds_per_pass(reference, x) if args.compile else 0.0
            print(f"{title:20s} {m:4d} {'bf16':7s} {t_ref * 1e3:8.3f} {1.0:8.2f} "
                  f"{weight_bytes(reference) / 2**20:8.1f} {0.0:8.4f} {0.0:9.4f}"
                  + (f" {tc_ref * 1e3:8.3f} {1.0:8.2f}" if args.compile else ""))
            for fmt, model in patched.items():
                with torch.no_grad():
                    out = model(x).double()
                    mlp_out = model.layers[0](x).double()
                err = (torch.linalg.norm(out - ref_out) / torch.linalg.norm(ref_out)).item()
                mlp_err = (torch.linalg.norm(mlp_out - ref_mlp) / torch.linalg.norm(ref_mlp)).item()
                t = seconds_per_pass(model, x)
                tc = compiled_seconds_per_pass(model, x) if args.compile else 0.0
                print(f"{title:20s} {m:4d} {fmt:7s} {t * 1e3:8.3f} {t_ref / t:8.2f} "
                      f"{weight_bytes(model) / 2**20:8.1f} {mlp_err:8.4f} {err:9.4f}"
                      + (f" {tc * 1e3:8.3f} {tc_ref / tc:8.2f}" if args.compile else ""))
        del reference, patched
        if cuda:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
