// bench_cluster_waves.cu — whether a grid of thread-block clusters starts in one wave.
//
// The tensor-core GEMM adds up a K split of 2 in a cluster (reduce_tile_in_cluster) and
// larger splits through a workspace and a second kernel (reduce_split_k, ~2 µs a call on
// the H100). Clusters of 4 and 8 measured up to 2x slower in the thirteenth session, read
// then as "not every cluster finds its SMs at once". This checks that reading directly:
// for CTAs that take one SM each (or half an SM), and cluster sizes 1..16, it prints
// cudaOccupancyMaxActiveClusters and, for a launch of `ctas` CTAs that each spin for
// SPIN_NS, how many of them started more than half a spin after the first (a second wave).
//
//   nvcc -O3 -arch=sm_90a -o /tmp/cluster_waves benchmarks/bench_cluster_waves.cu && /tmp/cluster_waves
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "bench_check.cuh"

constexpr int THREADS = 256;
constexpr uint64_t SPIN_NS = 40000;

__device__ __forceinline__ uint64_t global_ns()
{
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

__device__ __forceinline__ uint32_t sm_id()
{
    uint32_t s;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(s));
    return s;
}

// Thread 0 of each CTA records when it started and on which SM, then every CTA spins long
// enough that all CTAs of one wave overlap.
__global__ void spin_and_stamp(uint64_t *start_ns, uint32_t *sm)
{
    extern __shared__ uint8_t smem[];
    const uint64_t t0 = global_ns();
    const int cta = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    if (threadIdx.x == 0) {
        start_ns[cta] = t0;
        sm[cta] = sm_id();
        smem[0] = 1; // touch the shared memory the launch asked for
    }
    while (global_ns() - t0 < SPIN_NS) {
    }
}

struct result {
    int max_clusters;
    int late;   // CTAs that started more than SPIN_NS / 2 after the first
    int sms;    // distinct SMs used
};

static result run(int ctas, int cluster, size_t smem)
{
    result r = {0, 0, 0};
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = 1;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = (unsigned)cluster;
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(1, 1, (unsigned)ctas);
    config.blockDim = dim3(THREADS);
    config.dynamicSmemBytes = smem;
    config.attrs = attr;
    config.numAttrs = 1;
    if (cudaOccupancyMaxActiveClusters(&r.max_clusters, spin_and_stamp, &config) != cudaSuccess) {
        (void)cudaGetLastError();
        r.max_clusters = -1;
    }

    uint64_t *start = nullptr;
    uint32_t *sm = nullptr;
    CHECK(cudaMalloc(&start, ctas * sizeof(uint64_t)));
    CHECK(cudaMalloc(&sm, ctas * sizeof(uint32_t)));
    CHECK(cudaLaunchKernelEx(&config, spin_and_stamp, start, sm));
    CHECK(cudaDeviceSynchronize());
    std::vector<uint64_t> h_start(ctas);
    std::vector<uint32_t> h_sm(ctas);
    CHECK(cudaMemcpy(h_start.data(), start, ctas * sizeof(uint64_t), cudaMemcpyDeviceToHost));
    CHECK(cudaMemcpy(h_sm.data(), sm, ctas * sizeof(uint32_t), cudaMemcpyDeviceToHost));
    const uint64_t first = *std::min_element(h_start.begin(), h_start.end());
    for (uint64_t t : h_start) r.late += t - first > SPIN_NS / 2;
    std::sort(h_sm.begin(), h_sm.end());
    r.sms = (int)(std::unique(h_sm.begin(), h_sm.end()) - h_sm.begin());
    CHECK(cudaFree(start));
    CHECK(cudaFree(sm));
    return r;
}

int main()
{
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("%s, %d SMs\n", prop.name, prop.multiProcessorCount);
    CHECK(cudaFuncSetAttribute(spin_and_stamp, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
    CHECK(cudaFuncSetAttribute(spin_and_stamp, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));

    const size_t smems[] = {120 * 1024, 100 * 1024, 60 * 1024};
    const int clusters[] = {1, 2, 4, 8, 16};
    std::printf("| smem KiB | CTAs | cluster | max active clusters | CTAs in max clusters | late CTAs (run 1, 2, 3) | SMs used |\n");
    std::printf("|---:|---:|---:|---:|---:|---|---:|\n");
    for (size_t smem : smems) {
        for (int ctas : {128, 132, 256}) {
            for (int cluster : clusters) {
                if (ctas % cluster) continue;
                result r[3];
                for (int i = 0; i < 3; i++) r[i] = run(ctas, cluster, smem);
                std::printf("| %zu | %d | %d | %d | %d | %d, %d, %d | %d |\n", smem / 1024, ctas, cluster,
                            r[0].max_clusters, r[0].max_clusters * cluster, r[0].late, r[1].late, r[2].late, r[0].sms);
            }
        }
    }
    return 0;
}
