// bench_read_floor.cu — what a kernel that only streams bytes from DRAM achieves on this
// GPU, timed like bench_gemm_gpu.py (buffers rotated past 4x L2, CUDA-graph replay,
// median). It calibrates the "% of roofline" column: the roofline divides bytes by the
// copy bandwidth, which a short kernel cannot reach (launch, ramp-up, tail).
//
//   nvcc -O3 -arch=sm_90 -o /tmp/read_floor benchmarks/bench_read_floor.cu && /tmp/read_floor
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "bench_check.cuh"

// Each thread keeps UNROLL 16-byte streaming loads in flight per loop trip. Launched as a
// programmatic dependent (PDL), a kernel starts while the previous one drains and waits for
// it before its first load, as the w4a16 matmul kernels do (griddepcontrol is a no-op
// otherwise).
template <int UNROLL>
__global__ void read_bytes(const uint4 *src, size_t count, uint32_t *sink)
{
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;");
    uint32_t acc = 0;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i + (UNROLL - 1) * stride < count; i += UNROLL * stride) {
        uint4 v[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) v[u] = __ldcs(src + i + u * stride);
#pragma unroll
        for (int u = 0; u < UNROLL; u++) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    for (; i < count; i += stride) {
        const uint4 v = __ldcs(src + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x9E3779B9u) *sink = acc; // never true in practice; keeps the loads alive
}

static float median(std::vector<float> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

constexpr int THREADS = 256;

// Microseconds per read of one buffer: a CUDA graph reads each of `bufs` once, in order
// (launched as programmatic dependents when `pdl`), and is replayed 23 times; the median
// of the last 20 replays, divided by the buffer count.
static double time_reads(const std::vector<uint4 *> &bufs, size_t count, unsigned grid, int unroll, bool pdl,
                         cudaStream_t stream, uint32_t *sink, cudaEvent_t start, cudaEvent_t stop)
{
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(grid);
    config.blockDim = dim3(THREADS);
    config.stream = stream;
    config.attrs = &attr;
    config.numAttrs = pdl ? 1 : 0;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    for (const uint4 *src : bufs) {
        if (unroll == 1) CHECK(cudaLaunchKernelEx(&config, read_bytes<1>, src, count, sink));
        else CHECK(cudaLaunchKernelEx(&config, read_bytes<4>, src, count, sink));
    }
    CHECK(cudaStreamEndCapture(stream, &graph));
    CHECK(cudaGraphInstantiate(&exec, graph, 0));
    std::vector<float> times;
    for (int r = 0; r < 23; r++) {
        CHECK(cudaEventRecord(start, stream));
        CHECK(cudaGraphLaunch(exec, stream));
        CHECK(cudaEventRecord(stop, stream));
        CHECK(cudaEventSynchronize(stop));
        float ms;
        CHECK(cudaEventElapsedTime(&ms, start, stop));
        if (r >= 3) times.push_back(ms);
    }
    CHECK(cudaGraphExecDestroy(exec));
    CHECK(cudaGraphDestroy(graph));
    return 1e3 * median(times) / bufs.size();
}

int main()
{
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    cudaStream_t stream;
    CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    cudaEvent_t start, stop;
    CHECK(cudaEventCreate(&start));
    CHECK(cudaEventCreate(&stop));

    // copy bandwidth (read + write), as bench_gemm_gpu.py measures it
    const size_t copy_bytes = (size_t)1 << 30;
    void *a, *b;
    CHECK(cudaMalloc(&a, copy_bytes));
    CHECK(cudaMalloc(&b, copy_bytes));
    CHECK(cudaMemset(a, 1, copy_bytes));
    std::vector<float> times;
    for (int r = 0; r < 13; r++) {
        CHECK(cudaEventRecord(start, stream));
        CHECK(cudaMemcpyAsync(b, a, copy_bytes, cudaMemcpyDeviceToDevice, stream));
        CHECK(cudaEventRecord(stop, stream));
        CHECK(cudaEventSynchronize(stop));
        float ms;
        CHECK(cudaEventElapsedTime(&ms, start, stop));
        if (r >= 3) times.push_back(ms);
    }
    const double copy_bw = 2.0 * copy_bytes / (median(times) * 1e-3);
    CHECK(cudaFree(a));
    CHECK(cudaFree(b));
    std::printf("%s, %d SMs, L2 %d MiB, copy bandwidth %.2f TB/s\n", prop.name, prop.multiProcessorCount,
                prop.l2CacheSize >> 20, copy_bw / 1e12);

    uint32_t *sink;
    CHECK(cudaMalloc(&sink, 4));
    // bytes of the nvfp4 weights (codes + scales) of the Pi0.5 shapes
    const size_t sizes[] = {(size_t)4096 * 1024 * 9 / 16, (size_t)16384 * 2048 * 9 / 16, (size_t)32768 * 2048 * 9 / 16};
    const char *names[] = {"4096x1024 / 1024x4096", "16384x2048 / 2048x16384", "32768x2048"};
    for (int s = 0; s < 3; s++) {
        const size_t bytes = sizes[s];
        const int copies = (int)std::max<size_t>(2, 4 * (size_t)prop.l2CacheSize / bytes + 1);
        std::vector<uint4 *> bufs(copies);
        for (auto &p : bufs) {
            CHECK(cudaMalloc(&p, bytes));
            CHECK(cudaMemset(p, 3, bytes));
        }
        const size_t count = bytes / 16;
        for (int pdl = 0; pdl < 2; pdl++) {
            for (int ctas_per_sm : {1, 2, 4, 8}) {
                for (int unroll : {1, 4}) {
                    const unsigned grid = (unsigned)std::min<size_t>((count + THREADS - 1) / THREADS,
                                                                     (size_t)ctas_per_sm * prop.multiProcessorCount);
                    const double us = time_reads(bufs, count, grid, unroll, pdl == 1, stream, sink, start, stop);
                    std::printf("%-24s %6.2f MB  %d CTAs/SM unroll %d%s: %6.2f us  %.2f TB/s  %3.0f%% of copy-rate floor\n",
                                names[s], bytes / 1e6, ctas_per_sm, unroll, pdl ? " PDL" : "    ", us,
                                bytes / (us * 1e-6) / 1e12, 100.0 * (bytes / copy_bw) / (us * 1e-6));
                }
            }
        }
        for (auto *p : bufs) CHECK(cudaFree(p));
    }
    CHECK(cudaFree(sink));
    return 0;
}
