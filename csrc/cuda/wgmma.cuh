/*
 * wgmma.cuh — the Hopper (sm_90a) pieces the large-M kernel of gemm_tc.cu uses:
 * shared-memory matrix descriptors, the fences, wgmma.mma_async m64nNk16 with A in
 * registers, B in shared memory and fp32 accumulators, the tensor-memory-accelerator (TMA)
 * copies with the mbarriers they complete on, and the cluster barrier and distributed
 * shared-memory loads of its K split.
 *
 * The instructions here exist only where __CUDA_ARCH_FEAT_SM90_ALL is defined (nvcc for
 * sm_90a); other targets see W4A16_HAVE_WGMMA == 0 and the kernel that uses them
 * compiles to a trap that the host never launches (w4a16_tc_unsupported refuses it). The
 * tensor-map struct above that guard serves every target.
 *
 * B operand layout (PTX ISA, "shared memory matrix layout", K-major with the 128-byte
 * swizzle): a tile is stored as atoms of 8 rows x 128 bytes (64 16-bit elements of K);
 * row r of an atom is at r * 128 and its 16-byte chunk c at (c ^ (r % 8)) * 16, and
 * atoms of consecutive 8-row groups follow each other (the stride, 1024 bytes). A
 * wider K is a sequence of such column blocks. A k16 step inside the 64 elements is a
 * 32-byte offset of the start address. Atoms must be 1024-byte aligned.
 */
#ifndef W4A16_WGMMA_CUH
#define W4A16_WGMMA_CUH

#include <cuda.h> /* CUtensorMap, a plain struct: the library links the runtime, not the driver */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "cuda_common.cuh"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define W4A16_HAVE_WGMMA 1
#else
#define W4A16_HAVE_WGMMA 0
#endif

namespace {

constexpr int WGMMA_ATOM_BYTES = 1024; /* 8 rows x 128 bytes */

/* What the kernel's copies read, described for the TMA unit (built on the host per call,
 * passed as a __grid_constant__ parameter). */
struct wgmma_maps {
    CUtensorMap codes; /* uint8 [N][K / 2] (prepacked codes), box [BN][BK / 2], 128-, 64- or 32-byte swizzle */
    CUtensorMap x;     /* 16-bit [M][K] seen as [K / 64][M][64], box [BK / 64][BM][64], 128-byte swizzle */
};

#if W4A16_HAVE_WGMMA

/* Descriptor of a K-major, 128-byte-swizzled operand (x), as its two 32-bit halves. Low: the
 * start address >> 4 (bits 0-13) and the leading offset, unused for this layout (1, as
 * the ISA's examples set it; bits 16-29). High: the stride between 8-row groups (1024 B)
 * >> 4 (bits 32-45) and swizzle mode 1, 128 B (bits 62-63). Only the start address
 * differs between the k16 steps of a stage, so a kernel takes the low half of a base once
 * and adds offsets: the field cannot carry out (shared memory is below 256 KiB). */
constexpr uint32_t SW128_DESCRIPTOR_HIGH = (WGMMA_ATOM_BYTES >> 4) | (1u << 30);

__device__ __forceinline__ uint32_t sw128_descriptor_low(const void *base)
{
    return ((shared_address(base) & 0x3FFFF) >> 4) | (1u << 16);
}

/* the descriptor of the operand `bytes` past the base whose low half is `low` */
__device__ __forceinline__ uint64_t sw128_descriptor(uint32_t low, uint32_t bytes)
{
    return ((uint64_t)SW128_DESCRIPTOR_HIGH << 32) | (low + (bytes >> 4));
}

/* Shared-memory writes of the generic proxy (st.shared, cp.async) become visible to the
 * async proxy that wgmma reads through; each writing thread fences before the barrier. */
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wgmma_wait()
{
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

#define W4A16_F8(d, i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), \
                       "+f"(d[i + 6]), "+f"(d[i + 7])
#define W4A16_REGS16 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}"
#define W4A16_REGS32 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24," \
                     "%25,%26,%27,%28,%29,%30,%31}"
#define W4A16_REGS64 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24," \
                     "%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,"  \
                     "%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}"
#define W4A16_REGS128 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"   \
                      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"   \
                      "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"   \
                      "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,"   \
                      "%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,"   \
                      "%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,"   \
                      "%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,"   \
                      "%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127}"
/* d (64 x N, fp32, the warpgroup's fragment) += A (64 x 16) * B (16 x N, desc b), A from
 * registers: the m16n8k16 A fragment of each warp's 16 rows (operands after the
 * accumulators: %R..%R+3 = a[0..3], %R+4 = desc b; no transposes). */
#define W4A16_WGMMA_RS(shape_types, regs, a_op, b_op, ...)                                                     \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\nwgmma.mma_async.sync.aligned." shape_types " " regs \
                 ", " a_op ", " b_op ", p, 1, 1, 0;\n}\n"                                                       \
                 : __VA_ARGS__                                                                                  \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b))

/* wgmma_op<N, T>::run(d, a, b): the instruction above for x of either 16-bit type; the
 * macro writes both specialisations of one N, which differ only in the type suffix */
#define W4A16_WGMMA_OPS_T(n, acc, regs, a_op, b_op, type, suffix, ...)                                        \
    template <> struct wgmma_op<n, type> {                                                                   \
        static __device__ __forceinline__ void run(float (&d)[acc], const uint32_t (&a)[4], uint64_t b)      \
        {                                                                                                    \
            W4A16_WGMMA_RS("m64n" #n "k16.f32." suffix, regs, a_op, b_op, __VA_ARGS__);                      \
        }                                                                                                    \
    };
#define W4A16_WGMMA_OPS(n, acc, regs, a_op, b_op, ...)                                                       \
    W4A16_WGMMA_OPS_T(n, acc, regs, a_op, b_op, __nv_bfloat16, "bf16.bf16", __VA_ARGS__)                      \
    W4A16_WGMMA_OPS_T(n, acc, regs, a_op, b_op, __half, "f16.f16", __VA_ARGS__)

template <int N, typename T> struct wgmma_op;
W4A16_WGMMA_OPS(32, 16, W4A16_REGS16, "{%16,%17,%18,%19}", "%20", W4A16_F8(d, 0), W4A16_F8(d, 8))
W4A16_WGMMA_OPS(64, 32, W4A16_REGS32, "{%32,%33,%34,%35}", "%36", W4A16_F8(d, 0), W4A16_F8(d, 8), W4A16_F8(d, 16),
                W4A16_F8(d, 24))
W4A16_WGMMA_OPS(128, 64, W4A16_REGS64, "{%64,%65,%66,%67}", "%68", W4A16_F8(d, 0), W4A16_F8(d, 8), W4A16_F8(d, 16),
                W4A16_F8(d, 24), W4A16_F8(d, 32), W4A16_F8(d, 40), W4A16_F8(d, 48), W4A16_F8(d, 56))
W4A16_WGMMA_OPS(256, 128, W4A16_REGS128, "{%128,%129,%130,%131}", "%132", W4A16_F8(d, 0), W4A16_F8(d, 8), W4A16_F8(d, 16),
                W4A16_F8(d, 24), W4A16_F8(d, 32), W4A16_F8(d, 40), W4A16_F8(d, 48), W4A16_F8(d, 56),
                W4A16_F8(d, 64), W4A16_F8(d, 72), W4A16_F8(d, 80), W4A16_F8(d, 88), W4A16_F8(d, 96),
                W4A16_F8(d, 104), W4A16_F8(d, 112), W4A16_F8(d, 120))
#undef W4A16_WGMMA_OPS
#undef W4A16_WGMMA_OPS_T
#undef W4A16_WGMMA_RS
#undef W4A16_REGS128
#undef W4A16_REGS64
#undef W4A16_REGS32
#undef W4A16_REGS16
#undef W4A16_F8

/* ---- the copies: TMA (cp.async.bulk.tensor) completing on an mbarrier -------------------
 * One thread arms a stage's barrier with the bytes to expect and issues the tensor copies;
 * every thread that reads the stage waits for the barrier's phase. A barrier is reused
 * once per lap of the pipeline ring, so the phase to wait for is the lap's parity. */

__device__ __forceinline__ void mbarrier_init(uint64_t *bar, uint32_t arrivals)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(shared_address(bar)), "r"(arrivals) : "memory");
}

/* makes the initialised barriers visible to the async proxy that the copies complete on */
__device__ __forceinline__ void fence_mbarrier_init() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }

/* one arrival that also tells the barrier to wait for `bytes` more of copies */
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint64_t *bar, uint32_t bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(shared_address(bar)), "r"(bytes)
                 : "memory");
}

__device__ __forceinline__ void mbarrier_wait(uint64_t *bar, uint32_t parity)
{
    uint32_t done;
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(shared_address(bar)), "r"(parity)
                     : "memory");
    } while (!done);
}

/* The box of the 2-D tensor map `map` (a __grid_constant__ kernel parameter) at element
 * coordinates (inner, outer) into shared memory at `dst`, completing on `bar`. Elements
 * outside the tensor arrive as zeros and count towards the bytes. */
__device__ __forceinline__ void tma_load_2d(void *dst, const void *map, uint64_t *bar, int32_t inner, int32_t outer)
{
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];\n"
                 ::"r"(shared_address(dst)), "l"(reinterpret_cast<uint64_t>(map)), "r"(shared_address(bar)), "r"(inner),
                 "r"(outer)
                 : "memory");
}

/* The box of the 3-D tensor map `map` at element coordinates (inner, middle, outer), as
 * tma_load_2d. */
__device__ __forceinline__ void tma_load_3d(void *dst, const void *map, uint64_t *bar, int32_t inner, int32_t middle,
                                            int32_t outer)
{
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%3, %4, %5}], [%2];\n"
                 ::"r"(shared_address(dst)), "l"(reinterpret_cast<uint64_t>(map)), "r"(shared_address(bar)), "r"(inner),
                 "r"(middle), "r"(outer)
                 : "memory");
}

/* ---- thread-block clusters: the barrier and distributed shared memory ------------------ */

/* every thread of every CTA of the cluster arrives, and waits for all of them: the
 * shared-memory writes before it (release) are visible to the reads after it (acquire) */
__device__ __forceinline__ void cluster_sync()
{
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}

__device__ __forceinline__ uint32_t cluster_rank()
{
    uint32_t rank;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(rank));
    return rank;
}

/* 16 bytes at `p` (this CTA's shared memory) in the shared memory of CTA `rank` of the
 * cluster, i.e. at the same offset there */
__device__ __forceinline__ float4 load_cluster_float4(const void *p, uint32_t rank)
{
    uint32_t remote;
    float4 v;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(shared_address(p)), "r"(rank));
    asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];\n"
                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                 : "r"(remote)
                 : "memory");
    return v;
}

#endif /* W4A16_HAVE_WGMMA */

} // namespace

#endif /* W4A16_WGMMA_CUH */
