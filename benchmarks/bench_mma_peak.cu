// The ceiling of mma.sync m16n8k16 (bf16 in, fp32 accumulate) on this GPU: every warp runs
// independent chains of mma on register operands only, no memory traffic. The tensor-core
// GEMM (csrc/cuda/gemm_tc.cu) cannot go faster than this.
//   nvcc -O3 -arch=sm_90 -o /tmp/mma_peak benchmarks/bench_mma_peak.cu && /tmp/mma_peak
#include <cstdio>
#include <cstdint>
#include <cuda_runtime.h>

template <int CHAINS>
__global__ void mma_loop(float *out, int iters, uint32_t seed)
{
    uint32_t a[4] = {seed, seed ^ 1u, seed ^ 2u, seed ^ 3u}, b[2] = {seed ^ 4u, seed ^ 5u};
    float d[CHAINS][4] = {};
    for (int i = 0; i < iters; i++) {
#pragma unroll
        for (int c = 0; c < CHAINS; c++)
            asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                         : "+f"(d[c][0]), "+f"(d[c][1]), "+f"(d[c][2]), "+f"(d[c][3])
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
    float s = 0.0f;
#pragma unroll
    for (int c = 0; c < CHAINS; c++) s += d[c][0] + d[c][1] + d[c][2] + d[c][3];
    if (s == 12345.0f) out[threadIdx.x] = s; // keeps the loop alive
}

template <int CHAINS> void run(int warps_per_sm, int sms)
{
    float *out;
    cudaMalloc(&out, 1024 * sizeof(float));
    const int iters = 4096, threads = 32 * (warps_per_sm > 32 ? 32 : warps_per_sm);
    const int blocks = sms * (warps_per_sm * 32 / threads);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    mma_loop<CHAINS><<<blocks, threads>>>(out, iters, 7u);
    cudaEventRecord(e0);
    mma_loop<CHAINS><<<blocks, threads>>>(out, iters, 7u);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float ms = 0.0f;
    cudaEventElapsedTime(&ms, e0, e1);
    const double flops = 2.0 * 16 * 8 * 16 * (double)iters * CHAINS * blocks * (threads / 32);
    printf("mma.sync m16n8k16 bf16->fp32: %2d warps/SM, %d chains/warp: %7.1f TFLOPS\n", warps_per_sm, CHAINS,
           flops / (ms * 1e-3) / 1e12);
    cudaFree(out);
}

int main()
{
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    cudaDeviceProp p;
    cudaGetDeviceProperties(&p, 0);
    printf("%s, %d SMs\n", p.name, sms);
    for (int w : {4, 8, 16, 32}) {
        run<2>(w, sms);
        run<4>(w, sms);
        run<8>(w, sms);
    }
    return 0;
}
