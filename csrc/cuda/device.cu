/* device.cu — what the CUDA runtime reports about the machine (for `w4a16 info`). */
#include <stdio.h>

#include "cuda_common.cuh"
#include "cuda_ops.h"

extern "C" int w4a16_cuda_device_count(void)
{
    int count = 0;
    /* no driver or no GPU is a normal situation, not an error: report zero devices */
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky-free error so later calls start clean */
        return 0;
    }
    return count;
}

extern "C" int w4a16_cuda_device_info(int index, char *name, size_t name_bytes, int *major, int *minor,
                                      size_t *total_memory)
{
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    snprintf(name, name_bytes, "%s", prop.name);
    *major = prop.major;
    *minor = prop.minor;
    *total_memory = prop.totalGlobalMem;
    return 0;
}

extern "C" int w4a16_cuda_runtime_version(void) { return CUDART_VERSION; }
