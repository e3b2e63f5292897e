"""Runs one w4a16 gemm shape a few times so that ncu can profile its kernel.

    ncu -k regex:gemv python benchmarks/profile_gemv.py --fmt nvfp4 --m 1
"""

import argparse

import torch

import w4a16

parser = argparse.ArgumentParser()
parser.add_argument("--fmt", default="nvfp4")
parser.add_argument("--m", type=int, default=1)
parser.add_argument("--n", type=int, default=16384)
parser.add_argument("--k", type=int, default=2048)
parser.add_argument("--prepack", action="store_true")
parser.add_argument("--config", default=None, help="a name from w4a16.gemm_configs() (default: the dispatch)")
args = parser.parse_args()
w = (torch.randn(args.n, args.k, device="cuda") * 0.02).bfloat16()
qw = {"nvfp4": w4a16.quantize_nvfp4, "mxfp4": w4a16.quantize_mxfp4,
      "int4": lambda t: w4a16.pack_int4(t, 128)}[args.fmt](w)
if args.prepack:
    qw = w4a16.prepack(qw)
x = torch.randn(args.m, args.k, device="cuda", dtype=torch.bfloat16)
for _ in range(3):
    w4a16.gemm(x, qw, config=args.config)
torch.cuda.synchronize()
