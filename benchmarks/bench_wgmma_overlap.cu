// Does the decode hide under the warpgroup MMA, and if not, which part of the warpgroup
// kernel's stage stops it? gemm_wgmma_kernel (csrc/cuda/gemm_tc.cu) issues a stage's wgmma
// (A = decoded weights in registers, B = x in shared memory), waits for the previous
// stage's, and decodes the next stage's weights while those run. This loop does the same
// without global memory: per step, two warpgroups each issue 16 wgmma m64nNk16 (one
// 256-element stage, the k256 tiles) from fragment set s, commit, wait for the previous
// step's, and decode 16 code words (2 rows x 8 chunks) into set s ^ 1 with the kernel's
// NVFP4 / bf16 decode (dequant_fragment_word). The rows add the kernel's other per-stage
// pieces one at a time, then try other orders and split the decode:
//   registers:        code words made up in registers (ptxas may fold some of the decode);
//   +lds:             read from shared memory at the kernel's swizzled offsets;
//   +shfl:            each chunk's two block-scale words shared within the quad by shuffles;
//   +sync:            a __syncthreads after the wait (the kernel's buffer hand-over): this
//                     row is the kernel's stage without its copies and global loads;
//   woven:            the stage's wgmma issued two at a time between the chunks of the
//                     next stage's decode, then a wait for all of them;
//   ping-pong:        the warpgroups take turns issuing (named barriers), no __syncthreads;
//   integer part, multiplies only: half of the decode each (+lds);
//   ALU-pipe ops, FMA-pipe ops: as much integer work as the integer part, written as
//                     shifts and LOP3 (ALU pipe) or as IMAD (FMA pipe) (+lds);
//   A via smem (SS):  both wgmma operands in shared memory; the decode stores its fragments
//                     there for the next step (+lds); "no stores": the SS wgmma beside the
//                     decode into registers, or beside the ALU-pipe ops.
// Each is timed with the wgmma alone, the decode alone and both. If "both" takes the
// larger of the two, the decode hides; if their sum, the SM runs them one after the other.
//   nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -Icsrc/include -Icsrc \
//        -o /tmp/wgmma_overlap benchmarks/bench_wgmma_overlap.cu && /tmp/wgmma_overlap
#include <cstdio>
#include <type_traits>

#include <cuda_runtime.h>

#include "cuda/dequant.cuh"
#include "cuda/wgmma.cuh"

namespace {

constexpr int STEPS = 16;          // k16 steps per stage (BK = 256)
constexpr int CHUNKS = 8;          // 32-element chunks per row and stage
constexpr int B_BYTES = 64 * 512;  // x tile: up to 64 rows x 256 elements, bf16
constexpr int CODE_ROW_BYTES = 128; // a code row of one stage (256 elements)
enum : int { MMA = 1, DECODE = 2, LDS = 4, SHFL = 8, SYNC = 16, WEAVE = 32, PING = 64, INT_ONLY = 128, MUL_ONLY = 256,
             SS = 512, ALU_ONLY = 1024, FMA_ONLY = 2048, NO_STORE = 4096 };

// named barriers 1 and 2 (0 is __syncthreads): both warpgroups' 256 threads take part
__device__ __forceinline__ void named_sync(int id) { asm volatile("bar.sync %0, 256;\n" ::"r"(id) : "memory"); }
__device__ __forceinline__ void named_arrive(int id) { asm volatile("bar.arrive %0, 256;\n" ::"r"(id) : "memory"); }

// the kernel's codes_offset_swizzled for 128-byte rows (the TMA's 128-byte swizzle)
__device__ __forceinline__ int code_offset(int row, int chunk)
{
    const int linear = row * CODE_ROW_BYTES + chunk * 16;
    return linear ^ (((linear >> 7) & (CHUNKS - 1)) << 4);
}

// d += A (64 x 16, desc a) * B (16 x N, desc b): wgmma with both operands in shared memory
template <int N> struct wgmma_ss;
template <> struct wgmma_ss<32> {
    static __device__ __forceinline__ void run(float (&d)[16], uint64_t a, uint64_t b)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\nwgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
                     "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}, %16, %17, p, 1, 1, 0, 0;\n}\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                       "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
                     : "l"(a), "l"(b));
    }
};
template <> struct wgmma_ss<64> {
    static __device__ __forceinline__ void run(float (&d)[32], uint64_t a, uint64_t b)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\nwgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
                     "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,"
                     "%27,%28,%29,%30,%31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                       "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                       "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                       "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                     : "l"(a), "l"(b));
    }
};
constexpr int A_SET_BYTES = 16 * 2048;                    // one warpgroup's A: 16 k16 steps x 64 rows x 16, bf16
constexpr int A_OFFSET = B_BYTES + 128 * CODE_ROW_BYTES; // two sets per warpgroup after B and the codes

template <int N, int MODE>
__global__ void __launch_bounds__(256) overlap_loop(float *out, int iters, uint32_t seed)
{
#if W4A16_HAVE_WGMMA
    extern __shared__ __align__(1024) uint8_t smem[];
    uint8_t *codes = smem + B_BYTES;
    for (int i = threadIdx.x; i < (B_BYTES + 128 * CODE_ROW_BYTES) / 4; i += blockDim.x)
        reinterpret_cast<uint32_t *>(smem)[i] =
            i < B_BYTES / 4 ? 0x3c003c00u ^ (i & 0x00ff00ffu) : 0x9e3779b9u * (uint32_t)i; // small bf16; codes
    fence_proxy_async();
    __syncthreads();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int rows[2] = {16 * warp + g, 16 * warp + g + 8};
    const int wg = warp / 4;
    const uint32_t b_low = sw128_descriptor_low(smem);
    const uint32_t a_low = sw128_descriptor_low(smem + A_OFFSET + (threadIdx.x / 128) * 2 * A_SET_BYTES);
    uint32_t frag[2][STEPS][4];
    uint32_t code = seed ^ threadIdx.x;
    // the scales a thread holds for its chunks t and t + 4 (both rows, nvfp4: s0 and s1)
    chunk_scale_rows mine[2] = {{0x3f803f80u ^ (seed & 0x00010001u), 0x3f803f80u, 0u},
                                {0x3f803f80u, 0x3f803f80u ^ (seed & 0x00010001u), 0u}};
#pragma unroll
    for (int s = 0; s < 2; s++)
#pragma unroll
        for (int j = 0; j < STEPS; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) frag[s][j][e] = 0x3f803f80u ^ ((code + 4 * j + e) & 0x007f007fu); // bf16 in [1, 2)
    float d[N / 2];
#pragma unroll
    for (int i = 0; i < N / 2; i++) d[i] = 0.0f;

    // x's k16 step j, as the kernel's 128-byte-swizzled boxes of 64 elements
    auto b_desc = [&](int j) { return sw128_descriptor(b_low, (j >> 2) * N * 128 + (j & 3) * 32); };
    /* chunk c of the next stage into set `set` ^ 1 */
    auto decode_chunk = [&](int c, auto set_tag) {
        constexpr int set = decltype(set_tag)::value;
        chunk_scale_rows shared = mine[c / 4];
        if (MODE & SHFL) {
            const int src = (lane & ~3) | (c % 4);
            shared.s0 = __shfl_sync(0xffffffffu, shared.s0, src);
            shared.s1 = __shfl_sync(0xffffffffu, shared.s1, src);
        }
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const uint32_t word = (MODE & LDS)
                                      ? *reinterpret_cast<const uint32_t *>(codes + code_offset(rows[h], c) + 4 * t) ^ code
                                      : code ^ (0x9e3779b9u * (2 * c + h + 1));
            uint32_t p[4];
            const chunk_scale cs = row_of<__nv_bfloat16>(shared, h);
            if (MODE & INT_ONLY) { /* the integer part only: the scale by XOR */
                dequant_prepacked_word<W4A16_FORMAT_NVFP4, __nv_bfloat16>(word, 0u, p);
#pragma unroll
                for (int e = 0; e < 4; e++) p[e] ^= e < 2 ? cs.s0 : cs.s1;
            } else if (MODE & ALU_ONLY) { /* as many integer ops, all on the ALU pipe: shift, mask-and-xor */
#pragma unroll
                for (int e = 0; e < 4; e++)
                    p[e] = ((word >> (3 * e + 1)) & (0x81C081C0u >> e)) ^ (e < 2 ? shared.s0 : shared.s1);
            } else if (MODE & FMA_ONLY) { /* as many integer ops, all on the FMA pipe: two IMAD */
#pragma unroll
                for (int e = 0; e < 4; e++)
                    p[e] = (word * (2u * e + 3u) + (e < 2 ? shared.s0 : shared.s1)) * 0x01000100u + e;
            } else if (MODE & MUL_ONLY) { /* the multiplies only, of the word itself */
#pragma unroll
                for (int e = 0; e < 4; e++) p[e] = mul2<__nv_bfloat16>(word ^ (0x01000100u * e), e < 2 ? cs.s0 : cs.s1);
            } else {
                dequant_fragment_word<W4A16_FORMAT_NVFP4, __nv_bfloat16>(word, cs, 0u, p);
            }
            frag[set ^ 1][2 * c][h] = p[0];
            frag[set ^ 1][2 * c][2 + h] = p[1];
            frag[set ^ 1][2 * c + 1][h] = p[2];
            frag[set ^ 1][2 * c + 1][2 + h] = p[3];
        }
    };
    auto step = [&](auto set_tag) {
        constexpr int set = decltype(set_tag)::value;
        if ((MODE & WEAVE) && (MODE & MMA) && (MODE & DECODE)) {
            /* this step's wgmma two by two between the chunks of the next step's decode,
             * then wait for them all (their set is the one decoded next) */
            wgmma_fence();
#pragma unroll
            for (int c = 0; c < CHUNKS; c++) {
#pragma unroll
                for (int j = 2 * c; j < 2 * c + 2; j++)
                    wgmma_op<N, __nv_bfloat16>::run(d, frag[set][j], b_desc(j));
                decode_chunk(c, set_tag);
            }
            wgmma_commit();
            wgmma_wait<0>();
            if (MODE & SYNC) __syncthreads();
            code = code * 1664525u + 1013904223u;
            mine[0].s0 ^= code & 0x00010001u;
            return;
        }
        if (MODE & PING) {
            /* the warpgroups take turns issuing: warpgroup w waits on barrier 1 + w, which
             * the other arrives at once its own wgmma are issued */
            named_sync(1 + wg);
        }
        if (MODE & MMA) {
            wgmma_fence();
#pragma unroll
            for (int j = 0; j < STEPS; j++) {
                if (MODE & SS)
                    wgmma_ss<N>::run(d, sw128_descriptor(a_low, set * A_SET_BYTES + (j >> 2) * 8192 + (j & 3) * 32), b_desc(j));
                else wgmma_op<N, __nv_bfloat16>::run(d, frag[set][j], b_desc(j));
            }
            wgmma_commit();
            if (MODE & PING) named_arrive(2 - wg);
            wgmma_wait<1>();
        }
        if (MODE & SYNC) __syncthreads();
        if (MODE & DECODE) {
#pragma unroll
            for (int c = 0; c < CHUNKS; c++) decode_chunk(c, set_tag);
            if ((MODE & SS) && !(MODE & NO_STORE)) { /* the fragments into the other A set, for the next step */
                uint8_t *a_next = smem + A_OFFSET + wg * 2 * A_SET_BYTES + (set ^ 1) * A_SET_BYTES;
#pragma unroll
                for (int j = 0; j < STEPS; j++)
                    *reinterpret_cast<uint4 *>(a_next + j * 2048 + (threadIdx.x & 127) * 16) =
                        make_uint4(frag[set ^ 1][j][0], frag[set ^ 1][j][1], frag[set ^ 1][j][2], frag[set ^ 1][j][3]);
                fence_proxy_async();
                asm volatile("bar.sync %0, 128;\n" ::"r"(3 + wg) : "memory"); /* the warpgroup's stores */
            }
            // Without the wgmma (or with an SS wgmma and no stores) nothing reads the fragments,
            // and ptxas would drop most of the decode: store them on a condition that changes
            // every step and (almost) never holds.
            if ((!(MODE & MMA) || ((MODE & SS) && (MODE & NO_STORE))) && code == 0x7f7f7f7fu)
#pragma unroll
                for (int j = 0; j < STEPS; j++)
                    *reinterpret_cast<uint4 *>(smem + 16 * ((threadIdx.x + 256 * j) & 2047)) =
                        make_uint4(frag[set ^ 1][j][0], frag[set ^ 1][j][1], frag[set ^ 1][j][2], frag[set ^ 1][j][3]);
            code = code * 1664525u + 1013904223u;
            mine[0].s0 ^= code & 0x00010001u; // the scales change every step, as the kernel's do
        }
    };
    if ((MODE & PING) && wg == 1) named_arrive(1); /* warpgroup 0 goes first */
    for (int i = 0; i < iters; i += 2) {
        step(std::integral_constant<int, 0>());
        step(std::integral_constant<int, 1>());
    }
    if ((MODE & PING) && wg == 0) named_sync(1); /* the last arrival of warpgroup 1 */
    if (MODE & MMA) wgmma_wait<0>();
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

template <int N, int MODE> float run(int sms, int iters, float *out)
{
    auto kernel = overlap_loop<N, MODE>;
    const int smem = (A_OFFSET + 4 * A_SET_BYTES) + 1024; // one CTA per SM, as the k256 tiles run
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

// one row: the wgmma alone, the decode (with the pieces in EXTRA) alone, and both
template <int N, int EXTRA> void report(const char *name, int sms, int iters, float *out)
{
    const float mma = run<N, MMA | (EXTRA & (SYNC | SS))>(sms, iters, out);
    const float dec = run<N, DECODE | (EXTRA & ~PING)>(sms, iters, out); // no partner to take turns with
    const float both = run<N, MMA | DECODE | EXTRA>(sms, iters, out);
    const double macs = 2.0 * STEPS * 64.0 * N * 16.0; // 2 warpgroups x 16 x (64 x N x 16)
    printf("N = %2d %-17s wgmma %6.1f ns/step (%5.0f MAC/ns per SM)  decode %6.1f  both %6.1f  "
           "(max %6.1f, sum %6.1f)\n",
           N, name, mma, macs / mma, dec, both, mma > dec ? mma : dec, mma + dec);
}

template <int N> void ladder(int sms, int iters, float *out)
{
    report<N, 0>("registers", sms, iters, out);
    report<N, LDS>("+lds", sms, iters, out);
    report<N, LDS | SHFL>("+lds+shfl", sms, iters, out);
    report<N, LDS | SHFL | SYNC>("+lds+shfl+sync", sms, iters, out);
    report<N, LDS | SHFL | SYNC | WEAVE>("woven", sms, iters, out);
    report<N, LDS | SHFL | PING>("ping-pong", sms, iters, out);
    report<N, LDS | INT_ONLY>("integer part", sms, iters, out);
    report<N, LDS | MUL_ONLY>("multiplies only", sms, iters, out);
    report<N, LDS | ALU_ONLY>("ALU-pipe ops", sms, iters, out);
    report<N, LDS | FMA_ONLY>("FMA-pipe ops", sms, iters, out);
    report<N, LDS | SS>("A via smem (SS)", sms, iters, out);
    report<N, LDS | SS | NO_STORE>("SS, no stores", sms, iters, out);
    report<N, LDS | SS | NO_STORE | ALU_ONLY>("SS, ALU-pipe ops", sms, iters, out);
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
    printf("%s, %d SMs; one CTA of two warpgroups per SM; 256-element stages, nvfp4 decode\n", prop.name,
           prop.multiProcessorCount);
    ladder<32>(prop.multiProcessorCount, 10000, out);
    ladder<64>(prop.multiProcessorCount, 10000, out);
    const cudaError_t err = cudaDeviceSynchronize();
    if (err != cudaSuccess) printf("error: %s\n", cudaGetErrorString(err));
    cudaFree(out);
    return 0;
}
