/*
 * w4a16.h — the public C API of w4a16 (4-bit weights, 16-bit activations).
 *
 * Plain C99, usable from C, C++ and TensorRT plugins. Every function returns a
 * w4a16_status; on failure w4a16_last_error() returns a thread-local message that
 * names the argument at fault and what was expected.
 *
 * Conventions
 *  - Tensors cross the API as w4a16_view: a non-owning view (pointer, dtype, shape,
 *    strides in elements, device). The library only reads inputs and only writes the
 *    outputs it is given: destination passing, no allocation of device memory, no
 *    stream synchronisation. `stream` is the caller's cudaStream_t (NULL on the CPU or
 *    for the legacy default stream).
 *  - A linear weight W has shape [N, K] (out_features, in_features). 4-bit codes are
 *    packed two per byte along K, element 2j in the low nibble:
 *        codes[n, j] = q[n, 2j] | q[n, 2j + 1] << 4        (uint8 [N, K/2])
 *  - Formats (see DESIGN.md):
 *      NVFP4  E2M1 codes, E4M3 block scales [N, K/16], fp32 global scale
 *             w = e2m1(q) * e4m3(s) * global_scale
 *      MXFP4  E2M1 codes, E8M0 block scales [N, K/32]:   w = e2m1(q) * 2^(s - 127)
 *      INT4   group g in {32, 64, 128, K}; fp16/bf16 scales [N, K/g];
 *             symmetric: two's-complement nibble q in [-8, 7], w = q * s
 *             asymmetric: q in [0, 15], uint8 zero points z [N, K/g], w = (q - z) * s
 */
#ifndef W4A16_H
#define W4A16_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Exported from libw4a16.so; everything else in the library stays hidden. */
#if defined(_WIN32)
#define W4A16_API
#elif defined(__GNUC__)
#define W4A16_API __attribute__((visibility("default")))
#else
#define W4A16_API
#endif

#define W4A16_VERSION_MAJOR 0
#define W4A16_VERSION_MINOR 1
#define W4A16_VERSION_PATCH 0
#define W4A16_MAX_DIMS 4

typedef enum {
    W4A16_OK = 0,
    W4A16_ERR_INVALID_ARGUMENT = 1, /* a NULL pointer, a bad option value */
    W4A16_ERR_DTYPE = 2,            /* a tensor of the wrong element type */
    W4A16_ERR_SHAPE = 3,            /* wrong rank or extent, K not a multiple of the block */
    W4A16_ERR_LAYOUT = 4,           /* not row-major contiguous, or outputs overlap inputs */
    W4A16_ERR_DEVICE = 5,           /* unsupported device, or tensors on different devices */
    W4A16_ERR_VALUE = 6,            /* NaN or Inf in a weight, a scale out of range */
    W4A16_ERR_UNSUPPORTED = 7,      /* valid request this build cannot serve (e.g. no CUDA) */
    W4A16_ERR_CUDA = 8,             /* the CUDA runtime reported an error */
    W4A16_ERR_NO_MEMORY = 9         /* host memory allocation failed */
} w4a16_status;

typedef enum {
    W4A16_DTYPE_FLOAT32 = 0,
    W4A16_DTYPE_FLOAT16 = 1,
    W4A16_DTYPE_BFLOAT16 = 2,
    W4A16_DTYPE_UINT8 = 3,
    W4A16_DTYPE_FLOAT8_E4M3FN = 4, /* one byte, the NVFP4 block scale */
    W4A16_DTYPE_FLOAT8_E8M0 = 5,   /* one byte, the MXFP4 block scale (bias 127) */
    W4A16_DTYPE_INVALID = 255
} w4a16_dtype;

/* Device types use DLPack's numbering so views convert without a table. */
typedef enum {
    W4A16_DEVICE_CPU = 1,
    W4A16_DEVICE_CUDA = 2
} w4a16_device_type;

typedef struct {
    void *data;                        /* first element (any byte offset already applied) */
    w4a16_dtype dtype;
    int32_t ndim;                      /* 0 .. W4A16_MAX_DIMS */
    int64_t shape[W4A16_MAX_DIMS];
    int64_t strides[W4A16_MAX_DIMS];   /* in elements; row-major contiguous is required */
    int32_t device_type;               /* w4a16_device_type */
    int32_t device_id;
} w4a16_view;

typedef enum {
    W4A16_FORMAT_NVFP4 = 0,
    W4A16_FORMAT_MXFP4 = 1,
    W4A16_FORMAT_INT4 = 2
} w4a16_format;

/* Order of the codes of a weight. PREPACKED is the kernels' private order (a permutation
 * of the code bits inside each 16-byte chunk of a row, rows and scales unchanged: word t of
 * a chunk holds what thread t of a quad holds of a tensor-core A fragment, with each code's
 * bits where the format's decode wants them), made once by w4a16_prepack so that the GEMMs
 * need no shuffles; save and exchange weights in the CANONICAL layout (w4a16_unprepack). */
typedef enum {
    W4A16_LAYOUT_CANONICAL = 0,
    W4A16_LAYOUT_PREPACKED = 1
} w4a16_layout;

/* A quantized weight; zero-initialise it so that new fields keep their defaults. */
typedef struct {
    w4a16_format format;
    int64_t group_size;       /* 16 (nvfp4), 32 (mxfp4), 32/64/128/K (int4) */
    w4a16_view codes;         /* uint8 [N, K/2], in `layout` order */
    w4a16_view scales;        /* [N, K/group_size]: e4m3 / e8m0 bytes, or fp16/bf16 */
    w4a16_view global_scale;  /* nvfp4: fp32, one element, on the weight's device */
    w4a16_view zero_points;   /* int4 asymmetric: uint8 [N, K/g] in 0..15; data NULL otherwise */
    int32_t layout;           /* w4a16_layout; 0 = canonical */
} w4a16_weight;

/* Thread-local description of the last failure in this thread ("" if none). */
W4A16_API const char *w4a16_last_error(void);
W4A16_API const char *w4a16_status_name(w4a16_status status);
W4A16_API const char *w4a16_version(void);

/* Build facts: 1 if the CUDA kernels were compiled in, and their architectures
 * ("80;86;..."), "" when none. */
W4A16_API int w4a16_has_cuda(void);
W4A16_API const char *w4a16_cuda_archs(void);

/*
 * NVFP4 quantization of w [N, K] (fp32, fp16 or bf16; K % 16 == 0).
 *   global_scale: NULL computes amax(w) / (6 * 448); otherwise the given positive value.
 *   codes uint8 [N, K/2], scales e4m3fn (or uint8) [N, K/16], global_scale_out fp32 [1] or [].
 * On the CPU, NaN/Inf in w returns W4A16_ERR_VALUE. On CUDA the check cannot return
 * without a synchronisation, so a non-finite w makes *global_scale_out NaN instead:
 * callers that need the error read it back (the Python layer does).
 */
W4A16_API w4a16_status w4a16_quantize_nvfp4(const w4a16_view *w, const float *global_scale,
                                  w4a16_view *codes, w4a16_view *scales,
                                  w4a16_view *global_scale_out, void *stream);

/* MXFP4 (OCP MX) quantization of w [N, K], K % 32 == 0: codes [N, K/2], e8m0 scales [N, K/32]. */
W4A16_API w4a16_status w4a16_quantize_mxfp4(const w4a16_view *w, w4a16_view *codes, w4a16_view *scales,
                                  void *stream);

/* Group-wise INT4 of w [N, K]: group in {32, 64, 128} or K (per channel); scales fp16 or
 * bf16 [N, K/group] (their dtype chooses the scale type); zero_points uint8 [N, K/group]
 * for symmetric == 0, ignored (may be NULL) otherwise. */
W4A16_API w4a16_status w4a16_pack_int4(const w4a16_view *w, int64_t group, int symmetric,
                             w4a16_view *codes, w4a16_view *scales, w4a16_view *zero_points,
                             void *stream);

/* codes uint8 [N, K/2] (K % 8 == 0) of a weight of `format` -> out, same shape and device:
 * the prepacked order (w4a16_prepack) or back to the canonical one (w4a16_unprepack). The
 * order depends on the format (E2M1 codes and INT4 codes place their bits differently), so
 * unprepack with the format that prepacked. out must not overlap codes. */
W4A16_API w4a16_status w4a16_prepack(w4a16_format format, const w4a16_view *codes, w4a16_view *out, void *stream);
W4A16_API w4a16_status w4a16_unprepack(w4a16_format format, const w4a16_view *codes, w4a16_view *out, void *stream);

/* out [N, K] (fp32, fp16 or bf16) = dequant(w). */
W4A16_API w4a16_status w4a16_dequantize(const w4a16_weight *w, w4a16_view *out, void *stream);

/*
 * y [M, N] = alpha * x [M, K] @ dequant(w)^T + bias [N].
 * x fp16, bf16 or fp32 (CPU); y and bias have x's dtype; bias may be NULL.
 * Accumulation is fp32. y must not overlap x, bias or the weight.
 * workspace: device memory for split-K partial sums on CUDA (NULL, 0 is always valid:
 * the kernel choice then avoids configurations that need one); see w4a16_gemm_workspace.
 * It must be on y's device, 16-byte aligned and apart from x, y, bias and the weight
 * (alignment and overlap are checked: W4A16_ERR_LAYOUT); its contents on entry do not
 * matter.
 * Equivalent to w4a16_gemm_config(..., W4A16_GEMM_AUTO, ...).
 */
W4A16_API w4a16_status w4a16_gemm(const w4a16_view *x, const w4a16_weight *w, const w4a16_view *bias,
                        float alpha, w4a16_view *y, void *workspace, size_t workspace_bytes,
                        void *stream);

/*
 * Kernel configurations of the CUDA gemm, for tuners. Config 0 is the small-M kernel;
 * 1 .. count - 1 are tensor-core GEMM tile shapes and K splits (prepacked weights only).
 * W4A16_GEMM_AUTO picks one by a heuristic from measurements. The CPU ignores configs.
 */
#define W4A16_GEMM_AUTO (-1)
W4A16_API int w4a16_gemm_config_count(void);           /* 0 in a build without CUDA */
W4A16_API const char *w4a16_gemm_config_name(int config); /* NULL when out of range */

/* The gemm with a chosen config: W4A16_ERR_UNSUPPORTED if that config cannot run these
 * arguments (layout, K multiple, alignment, shared memory), W4A16_ERR_INVALID_ARGUMENT
 * if the workspace is too small for it. */
W4A16_API w4a16_status w4a16_gemm_config(const w4a16_view *x, const w4a16_weight *w, const w4a16_view *bias,
                               float alpha, w4a16_view *y, int config, void *workspace,
                               size_t workspace_bytes, void *stream);

/*
 * The gate and up projections of a gated MLP, down(gelu_tanh(gate(x)) * up(x)), as one
 * gemm whose epilogue applies the activation and the product (GeGLU, Gemma's MLP):
 *   h [M, N] = alpha * x [M, K] @ dequant(w)^T + bias [N], rounded to x's dtype (as
 *              w4a16_gemm_config would write it);
 *   y [M, N/2]: y[:, 8j + r] = gelu_tanh(h[:, 16j + r]) * h[:, 16j + 8 + r], r = 0..7,
 *              in fp32, rounded once to x's dtype;
 *   gelu_tanh(v) = 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3))).
 * So w holds the gate and up rows interleaved in blocks of W4A16_GATED_ROWS: rows 16j ..
 * 16j + 7 are gate rows 8j .. 8j + 7, rows 16j + 8 .. 16j + 15 up rows 8j .. 8j + 7 (every
 * mma tile then holds a gate row and its up row in one thread). N % 16 == 0. Configs,
 * workspace (w4a16_gemm_workspace of the same x and w) and checks as w4a16_gemm_config.
 */
#define W4A16_GATED_ROWS 8
W4A16_API w4a16_status w4a16_gemm_geglu(const w4a16_view *x, const w4a16_weight *w, const w4a16_view *bias,
                              float alpha, w4a16_view *y, int config, void *workspace,
                              size_t workspace_bytes, void *stream);

/* Bytes of workspace that w4a16_gemm_config(x, w, ..., config, ...) uses for these
 * shapes (0 on the CPU, for config 0, and for configs without a K split); for
 * W4A16_GEMM_AUTO, those of the config the heuristic picks when given enough. */
W4A16_API w4a16_status w4a16_gemm_workspace(const w4a16_view *x, const w4a16_weight *w, int config,
                                  size_t *bytes);

#ifdef __cplusplus
}
#endif

#endif /* W4A16_H */
