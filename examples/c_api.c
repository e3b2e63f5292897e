/*
 * c_api.c — the w4a16 C API from plain C, as a TensorRT plugin would use it.
 *
 * Quantizes a weight W [N, K] to NVFP4 on the CPU, multiplies x [M, K] by it with
 * w4a16_gemm, and checks the result against a float64 product with the dequantized
 * weight (w4a16_dequantize). Exit status 0 and "c_api: OK" on success.
 *
 *   cc -I$(python -c 'import w4a16; print(w4a16.get_include())') c_api.c \
 *      $(python -c 'import w4a16; print(w4a16.get_library())') -lm -o c_api && ./c_api
 *
 * In a plugin's enqueue() the same calls take device pointers in the views
 * (device_type = W4A16_DEVICE_CUDA) and the plugin's cudaStream_t as `stream`; built with
 * -DW4A16_EXAMPLE_CUDA (and -lcudart) this example also does that on GPU 0 and checks that
 * the GPU quantizer writes the CPU's bytes and the GPU gemm the same product.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "w4a16.h"
#ifdef W4A16_EXAMPLE_CUDA
#include <cuda_runtime.h>
#endif

enum { M = 3, N = 40, K = 128 };

static w4a16_view matrix(void *data, w4a16_dtype dtype, int64_t rows, int64_t cols)
{
    w4a16_view v;
    memset(&v, 0, sizeof v);
    v.data = data;
    v.dtype = dtype;
    v.ndim = 2;
    v.shape[0] = rows;
    v.shape[1] = cols;
    v.strides[0] = cols;
    v.strides[1] = 1;
    v.device_type = W4A16_DEVICE_CPU;
    return v;
}

/* A one-element fp32 vector (the NVFP4 global scale). */
static w4a16_view scalar(float *data)
{
    w4a16_view v = matrix(data, W4A16_DTYPE_FLOAT32, 1, 1);
    v.ndim = 1;
    return v;
}

/* The NVFP4 weight made of its three tensors. */
static w4a16_weight nvfp4_weight(w4a16_view codes, w4a16_view scales, w4a16_view global_scale)
{
    w4a16_weight weight;
    memset(&weight, 0, sizeof weight);
    weight.format = W4A16_FORMAT_NVFP4;
    weight.group_size = 16;
    weight.codes = codes;
    weight.scales = scales;
    weight.global_scale = global_scale;
    return weight;
}

/* A fixed pseudo-random sequence in [-1, 1) (no libc rand: the same on every platform). */
static float next_value(uint32_t *state)
{
    *state = *state * 1664525u + 1013904223u;
    return (float)(*state >> 8) / 8388608.0f - 1.0f;
}

static int check(w4a16_status st, const char *what)
{
    if (st == W4A16_OK) return 0;
    fprintf(stderr, "c_api: %s failed: %s (%s)\n", what, w4a16_status_name(st), w4a16_last_error());
    return 1;
}

#ifdef W4A16_EXAMPLE_CUDA
/* fp32 -> bf16 bits, round to nearest even (finite inputs), and back */
static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The same weight quantized and multiplied on GPU 0: bytes equal to the CPU's, and the
 * bf16 product within bf16 rounding of the float64 one. Returns 0 on success. */
static int run_on_gpu(const float *w, const float *x, const uint8_t *cpu_codes, const uint8_t *cpu_scales,
                      const float *w_deq)
{
    static uint16_t x16[M * K], y16[M * N];
    static uint8_t codes[N * K / 2], scales[N * K / 16];
    float *d_w = NULL, *d_gs = NULL;
    uint8_t *d_codes = NULL, *d_scales = NULL;
    uint16_t *d_x = NULL, *d_y = NULL;
    double err = 0.0, norm = 0.0;
    int i, j, kk, failed = 1, count = 0;
    cudaStream_t stream = NULL;

    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        printf("c_api: no GPU, GPU part skipped\n");
        return 0;
    }
    for (i = 0; i < M * K; i++) x16[i] = to_bf16(x[i]);
    if (cudaStreamCreate(&stream) != cudaSuccess || cudaMalloc((void **)&d_w, sizeof(float) * N * K) != cudaSuccess ||
        cudaMalloc((void **)&d_gs, sizeof(float)) != cudaSuccess || cudaMalloc((void **)&d_codes, N * K / 2) != cudaSuccess ||
        cudaMalloc((void **)&d_scales, N * K / 16) != cudaSuccess ||
        cudaMalloc((void **)&d_x, sizeof(uint16_t) * M * K) != cudaSuccess ||
        cudaMalloc((void **)&d_y, sizeof(uint16_t) * M * N) != cudaSuccess) {
        fprintf(stderr, "c_api: CUDA allocation failed\n");
        goto done;
    }
    cudaMemcpy(d_w, w, sizeof(float) * N * K, cudaMemcpyHostToDevice);
    cudaMemcpy(d_x, x16, sizeof(uint16_t) * M * K, cudaMemcpyHostToDevice);
    {
        w4a16_view wv = matrix(d_w, W4A16_DTYPE_FLOAT32, N, K), qv = matrix(d_codes, W4A16_DTYPE_UINT8, N, K / 2);
        w4a16_view sv = matrix(d_scales, W4A16_DTYPE_FLOAT8_E4M3FN, N, K / 16), gv = scalar(d_gs);
        w4a16_view xv = matrix(d_x, W4A16_DTYPE_BFLOAT16, M, K), yv = matrix(d_y, W4A16_DTYPE_BFLOAT16, M, N);
        w4a16_weight weight;
        w4a16_view *all[6] = {&wv, &qv, &sv, &gv, &xv, &yv};
        for (i = 0; i < 6; i++) all[i]->device_type = W4A16_DEVICE_CUDA;
        weight = nvfp4_weight(qv, sv, gv);
        if (check(w4a16_quantize_nvfp4(&wv, NULL, &qv, &sv, &gv, stream), "quantize_nvfp4 (GPU)") ||
            check(w4a16_gemm(&xv, &weight, NULL, 1.0f, &yv, NULL, 0, stream), "gemm (GPU)"))
            goto done;
    }
    if (cudaStreamSynchronize(stream) != cudaSuccess) {
        fprintf(stderr, "c_api: GPU error %s\n", cudaGetErrorString(cudaGetLastError()));
        goto done;
    }
    cudaMemcpy(codes, d_codes, N * K / 2, cudaMemcpyDeviceToHost);
    cudaMemcpy(scales, d_scales, N * K / 16, cudaMemcpyDeviceToHost);
    cudaMemcpy(y16, d_y, sizeof(uint16_t) * M * N, cudaMemcpyDeviceToHost);
    if (memcmp(codes, cpu_codes, sizeof codes) != 0 || memcmp(scales, cpu_scales, sizeof scales) != 0) {
        fprintf(stderr, "c_api: GPU quantizer bytes differ from the CPU's\n");
        goto done;
    }
    for (i = 0; i < M; i++)
        for (j = 0; j < N; j++) {
            double ref = 0.0, y = from_bf16(y16[i * N + j]);
            for (kk = 0; kk < K; kk++) ref += (double)from_bf16(x16[i * K + kk]) * (double)w_deq[j * K + kk];
            err += (y - ref) * (y - ref);
            norm += ref * ref;
        }
    err = sqrt(err / norm);
    printf("c_api: GPU bytes equal the CPU's; GPU gemm relative error %.2e\n", err);
    failed = !(err < 1e-2);
done:
    cudaFree(d_w);
    cudaFree(d_gs);
    cudaFree(d_codes);
    cudaFree(d_scales);
    cudaFree(d_x);
    cudaFree(d_y);
    if (stream) cudaStreamDestroy(stream);
    return failed;
}
#endif

int main(void)
{
    static float w[N * K], x[M * K], y[M * N], w_deq[N * K];
    static uint8_t codes[N * K / 2], scales[N * K / 16];
    float global_scale = 0.0f;
    uint32_t state = 12345u;
    double err = 0.0, norm = 0.0;
    int i, j, kk, failed = 0;

    for (i = 0; i < N * K; i++) w[i] = 0.05f * next_value(&state);
    for (i = 0; i < M * K; i++) x[i] = next_value(&state);
    printf("w4a16 %s, CUDA kernels: %s\n", w4a16_version(), w4a16_has_cuda() ? "yes" : "no");

    {
        w4a16_view wv = matrix(w, W4A16_DTYPE_FLOAT32, N, K);
        w4a16_view qv = matrix(codes, W4A16_DTYPE_UINT8, N, K / 2);
        w4a16_view sv = matrix(scales, W4A16_DTYPE_FLOAT8_E4M3FN, N, K / 16);
        w4a16_view gv = scalar(&global_scale);
        w4a16_weight weight;
        w4a16_view xv = matrix(x, W4A16_DTYPE_FLOAT32, M, K);
        w4a16_view yv = matrix(y, W4A16_DTYPE_FLOAT32, M, N);
        w4a16_view dv = matrix(w_deq, W4A16_DTYPE_FLOAT32, N, K);
        failed |= check(w4a16_quantize_nvfp4(&wv, NULL, &qv, &sv, &gv, NULL), "quantize_nvfp4");
        weight = nvfp4_weight(qv, sv, gv);
        failed |= check(w4a16_gemm(&xv, &weight, NULL, 1.0f, &yv, NULL, 0, NULL), "gemm");
        failed |= check(w4a16_dequantize(&weight, &dv, NULL), "dequantize");
        /* a wrong call must fail with a message that names the argument */
        yv.shape[1] = N - 1;
        if (w4a16_gemm(&xv, &weight, NULL, 1.0f, &yv, NULL, 0, NULL) != W4A16_ERR_SHAPE ||
            strstr(w4a16_last_error(), "y") == NULL) {
            fprintf(stderr, "c_api: a y of the wrong shape was not rejected\n");
            failed = 1;
        }
    }
    if (failed) return 1;
    for (i = 0; i < M; i++)
        for (j = 0; j < N; j++) {
            double ref = 0.0;
            for (kk = 0; kk < K; kk++) ref += (double)x[i * K + kk] * (double)w_deq[j * K + kk];
            err += (y[i * N + j] - ref) * (y[i * N + j] - ref);
            norm += ref * ref;
        }
    err = sqrt(err / norm);
    printf("c_api: global scale %.6g, relative error of gemm vs float64 %.2e\n", (double)global_scale, err);
    if (!(err < 1e-5)) {
        fprintf(stderr, "c_api: error too large\n");
        return 1;
    }
#ifdef W4A16_EXAMPLE_CUDA
    if (run_on_gpu(w, x, codes, scales, w_deq)) return 1;
#endif
    printf("c_api: OK\n");
    return 0;
}
