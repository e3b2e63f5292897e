// check_e4m3_cvt.cu — the GPU quantizer rounds NVFP4 block scales with the SM89+ hardware
// conversion (cvt.rn.satfinite.e4m3x2.f32); this compares it with the C rule it replaces,
// w4a16_e4m3_encode, for every non-negative float and +Inf (the scales' domain).
// Built and run by tests/test_gpu_quantize.py; prints the mismatch count, exits 1 on any.
#include <cstdint>
#include <cstdio>

#include "../../csrc/core/codecs.h"

__global__ void compare(uint32_t first, uint32_t count, unsigned long long *mismatches, uint32_t *example)
{
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < count; i += gridDim.x * blockDim.x) {
        const float s = __uint_as_float(first + i);
        uint16_t pair;
        asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(pair) : "f"(0.0f), "f"(s));
        if ((uint8_t)(pair & 0xFFu) != w4a16_e4m3_encode(s)) {
            atomicAdd(mismatches, 1ull);
            *example = first + i;
        }
    }
}

int main()
{
    unsigned long long *mismatches;
    uint32_t *example;
    if (cudaMallocManaged(&mismatches, sizeof *mismatches) != cudaSuccess ||
        cudaMallocManaged(&example, sizeof *example) != cudaSuccess) {
        std::printf("no CUDA device\n");
        return 2;
    }
    *mismatches = 0;
    *example = 0;
    compare<<<4096, 256>>>(0u, 0x7F800001u, mismatches, example); // 0 .. +Inf
    if (cudaDeviceSynchronize() != cudaSuccess) {
        std::printf("kernel failed\n");
        return 2;
    }
    std::printf("mismatches %llu (e.g. bits 0x%08x)\n", *mismatches, *example);
    return *mismatches == 0 ? 0 : 1;
}
