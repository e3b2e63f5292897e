// Does the decode hide under the warpgroup MMA? The warpgroup kernel of csrc/cuda/gemm_tc.cu
// issues a stage's wgmma (A = decoded weights in registers, B = x in shared memory) and then
// decodes the next stage's weights while those run. This measures the two halves without
// memory traffic: per step, two warpgroups each issue 8 wgmma m64nNk16 (one 128-deep stage)
// from fragment set s, commit, wait for the previous step's, and decode 8 code words into
// set s ^ 1 with the kernel's own E2M1 -> bf16 decode (12 integer ops and 4 HMUL2 a word,
// dequant.cuh). Three runs per N: wgmma only, decode only, both. If "both" takes as long as
// the larger of the two, the decode hides; if it takes their sum, the SM runs them one
// after the other. (Alone, ptxas issues half of the decode's multiplies as HFMA2.MMA; beside
// the wgmma it keeps them all HMUL2, as in the kernel.)
//   nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -Icsrc/include -Icsrc \
//        -o /tmp/wgmma_overlap benchmarks/bench_wgmma_overlap.cu && /tmp/wgmma_overlap
#include <cstdio>
#include <type_traits>

#include <cuda_runtime.h>

#include "cuda/dequant.cuh"
#include "cuda/wgmma.cuh"

namespace {

constexpr int STEPS = 8;       // k16 steps per stage (BK = 128)
constexpr int WORDS = 8;       // code words a thread decodes per stage (2 rows x 4 chunks)
constexpr int B_BYTES = 256 * 256; // x tile: up to 256 rows x 128 elements, bf16

template <int N, bool MMA, bool DECODE>
__global__ void __launch_bounds__(256) overlap_loop(float *out, int iters, uint32_t seed)
{
#if W4A16_HAVE_WGMMA
    extern __shared__ __align__(1024) uint8_t smem[];
    for (int i = threadIdx.x; i < B_BYTES / 4; i += blockDim.x)
        reinterpret_cast<uint32_t *>(smem)[i] = 0x3c003c00u ^ (i & 0x00ff00ffu); // small bf16 values
    fence_proxy_async();
    __syncthreads();
    const uint32_t b_low = sw128_descriptor_low(smem);
    uint32_t frag[2][STEPS][4];
    uint32_t code = seed ^ threadIdx.x, scale = 0x3f803f80u ^ (seed & 0x00010001u);
#pragma unroll
    for (int s = 0; s < 2; s++)
#pragma unroll
        for (int j = 0; j < STEPS; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) frag[s][j][e] = 0x3f803f80u ^ ((code + 4 * j + e) & 0x007f007fu); // bf16 in [1, 2)
    float d[N / 2];
#pragma unroll
    for (int i = 0; i < N / 2; i++) d[i] = 0.0f;

    auto step = [&](auto set_tag) {
        constexpr int set = decltype(set_tag)::value;
        if (MMA) {
            wgmma_fence();
#pragma unroll
            for (int j = 0; j < STEPS; j++)
                wgmma_op<N, __nv_bfloat16>::run(d, frag[set][j], sw128_descriptor(b_low, (j >> 2) * N * 128 + (j & 3) * 32));
            wgmma_commit();
            wgmma_wait<1>();
        }
        if (DECODE) {
#pragma unroll
            for (int w = 0; w < WORDS; w++) {
                uint32_t p[4];
                dequant_e2m1_bf16_word(code ^ (0x9e3779b9u * (w + 1)), p);
                const int j = 2 * (w & 3), h = w >> 2; // word w: chunk w % 4 of row h
                frag[set ^ 1][j][h] = mul2<__nv_bfloat16>(p[0], scale);
                frag[set ^ 1][j][2 + h] = mul2<__nv_bfloat16>(p[1], scale);
                frag[set ^ 1][j + 1][h] = mul2<__nv_bfloat16>(p[2], scale);
                frag[set ^ 1][j + 1][2 + h] = mul2<__nv_bfloat16>(p[3], scale);
            }
            // Without the wgmma nothing reads the fragments, and ptxas would drop most of the
            // decode: store them on a condition that changes every step and (almost) never holds.
            if (!MMA && code == 0x7f7f7f7fu)
#pragma unroll
                for (int j = 0; j < STEPS; j++)
                    *reinterpret_cast<uint4 *>(smem + 16 * (threadIdx.x + 256 * j)) =
                        make_uint4(frag[set ^ 1][j][0], frag[set ^ 1][j][1], frag[set ^ 1][j][2], frag[set ^ 1][j][3]);
            code = code * 1664525u + 1013904223u;
        }
    };
    for (int i = 0; i < iters; i += 2) {
        step(std::integral_constant<int, 0>());
        step(std::integral_constant<int, 1>());
    }
    if (MMA) wgmma_wait<0>();
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < N / 2; i++) s += d[i];
#pragma unroll
    for (int j = 0; j < STEPS; j++) s += __uint_as_float(frag[0][j][0] ^ frag[1][j][3]);
    if (s == 12345.0f) out[threadIdx.x] = s; // keeps everything alive
#else
    (void)out, (void)iters, (void)seed;
#endif
}

template <int N, bool MMA, bool DECODE> float run(int sms, int iters, float *out)
{
    auto kernel = overlap_loop<N, MMA, DECODE>;
    const int smem = 160 * 1024; // one CTA per SM, as the GEMM runs
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    kernel<<<sms, 256, smem>>>(out, iters, 1u); // warm-up
    float best = 1e30f;
    for (int r = 0; r < 5; r++) {
        cudaEventRecord(start);
        kernel<<<sms, 256, smem>>>(out, iters, (uint32_t)r);
        cudaEventRecord(stop);
        cudaEventSynchronize(stop);
        float ms = 0.0f;
        cudaEventElapsedTime(&ms, start, stop);
        best = ms < best ? ms : best;
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    return best * 1e6f / iters; // ns per step
}

template <int N> void report(int sms, int iters, float *out)
{
    const float mma = run<N, true, false>(sms, iters, out), dec = run<N, false, true>(sms, iters, out),
                both = run<N, true, true>(sms, iters, out);
    // MACs a step: 2 warpgroups x 8 x (64 x N x 16)
    const double macs = 2.0 * STEPS * 64.0 * N * 16.0;
    printf("N = %3d: wgmma only %6.1f ns/step (%5.0f MAC/ns per SM)  decode only %6.1f  both %6.1f  "
           "(max %6.1f, sum %6.1f)\n",
           N, mma, macs / mma, dec, both, mma > dec ? mma : dec, mma + dec);
}

} // namespace

int main()
{
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess || prop.major != 9) {
        printf("needs an SM 9.0 GPU\n");
        return 0;
    }
    float *out;
    cudaMalloc(&out, 1024 * sizeof(float));
    printf("%s, %d SMs; one CTA of two warpgroups per SM\n", prop.name, prop.multiProcessorCount);
    report<64>(prop.multiProcessorCount, 20000, out);
    report<128>(prop.multiProcessorCount, 20000, out);
    report<256>(prop.multiProcessorCount, 10000, out);
    const cudaError_t err = cudaDeviceSynchronize();
    if (err != cudaSuccess) printf("error: %s\n", cudaGetErrorString(err));
    cudaFree(out);
    return 0;
}
