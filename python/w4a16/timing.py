"""CUDA-graph timing helpers shared by the benchmarks, the examples and the tests.

capture(fn) records fn() into a CUDA graph (after a warm-up run on a side stream, as
capture requires); replay_seconds(graph) is the median time of one replay, from CUDA
events, after a few warm-up replays.
"""

from __future__ import annotations

import statistics
from typing import Callable

import torch


def capture(fn: Callable[[], object]) -> torch.cuda.CUDAGraph:
    """A CUDA graph of one call of fn (its outputs live in the graph's memory pool)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()  # warm-up: module loads, handles and allocations happen outside the graph
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph


def replay_seconds(graph: torch.cuda.CUDAGraph, repeats: int = 30, warmup: int = 3) -> float:
    """Median seconds of one replay of `graph`."""
    for _ in range(warmup):
        graph.replay()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)
