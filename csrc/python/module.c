/*
 * module.c — the CPython extension w4a16._C: argument parsing, DLPack import, error
 * mapping. The Python layer (python/w4a16) allocates every output in the caller's
 * framework and passes it in; this file only borrows tensors for the length of a call.
 *
 * Every function follows one shape: import the arguments into views (each import
 * records its owner), run the C API with the GIL released, map a failure status to a
 * Python exception, and release every owner on the single exit path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "codecs.h"
#include "core.h"
#include "dlpack_import.h"
#include "w4a16.h"
#if defined(W4A16_WITH_CUDA)
#include "../cuda/cuda_ops.h"
#endif

#define MAX_OWNERS 8

typedef struct {
    w4a16_dl_owner items[MAX_OWNERS];
    int count;
} owner_set;

static void release_all(owner_set *set)
{
    int i;
    for (i = 0; i < set->count; i++) w4a16_dl_release(&set->items[i]);
    set->count = 0;
}

static int import_arg(owner_set *set, PyObject *obj, const char *name, int writable, PyObject *dl_stream,
                      w4a16_view *view)
{
    if (set->count == MAX_OWNERS) {
        PyErr_SetString(PyExc_RuntimeError, "w4a16: too many tensor arguments");
        return -1;
    }
    if (w4a16_dl_import(obj, name, writable, dl_stream, view, &set->items[set->count]) < 0) return -1;
    set->count++;
    return 0;
}

/* Optional tensor: None leaves the view empty (data NULL). */
static int import_optional(owner_set *set, PyObject *obj, const char *name, int writable, PyObject *dl_stream,
                           w4a16_view *view)
{
    memset(view, 0, sizeof *view);
    if (obj == Py_None) return 0;
    return import_arg(set, obj, name, writable, dl_stream, view);
}

/* stream: None or an int cudaStream_t. DLPack reserves 0, so the legacy default
 * stream is passed to producers as 1, its DLPack name. */
static int parse_stream(PyObject *obj, void **stream, PyObject **dl_stream)
{
    *stream = NULL;
    *dl_stream = NULL;
    if (obj == Py_None) return 0;
    *stream = PyLong_AsVoidPtr(obj);
    if (!*stream && PyErr_Occurred()) return -1;
    *dl_stream = *stream ? (Py_INCREF(obj), obj) : PyLong_FromLong(1);
    return *dl_stream ? 0 : -1;
}

static void raise_status(w4a16_status st, const char *function)
{
    PyObject *type;
    switch (st) {
    case W4A16_ERR_DTYPE: type = PyExc_TypeError; break;
    case W4A16_ERR_NO_MEMORY: type = PyExc_MemoryError; break;
    case W4A16_ERR_UNSUPPORTED:
    case W4A16_ERR_CUDA: type = PyExc_RuntimeError; break;
    default: type = PyExc_ValueError; break;
    }
    PyErr_Format(type, "w4a16.%s: %s", function, w4a16_last_error());
}

/* weight tuple: (format, group_size, codes, scales, global_scale | None, zero_points | None, layout) */
static int import_weight(owner_set *set, PyObject *tuple, PyObject *dl_stream, w4a16_weight *w)
{
    int format, layout;
    long long group;
    PyObject *codes, *scales, *gs, *zeros;
    memset(w, 0, sizeof *w);
    if (!PyArg_ParseTuple(tuple,
                          "iLOOOOi;weight: expected (format, group_size, codes, scales, global_scale, zero_points, layout)",
                          &format, &group, &codes, &scales, &gs, &zeros, &layout))
        return -1;
    w->format = (w4a16_format)format;
    w->group_size = group;
    w->layout = layout;
    if (import_arg(set, codes, "weight.codes", 0, dl_stream, &w->codes) < 0 ||
        import_arg(set, scales, "weight.scales", 0, dl_stream, &w->scales) < 0 ||
        import_optional(set, gs, "weight.global_scale", 0, dl_stream, &w->global_scale) < 0 ||
        import_optional(set, zeros, "weight.zero_points", 0, dl_stream, &w->zero_points) < 0)
        return -1;
    return 0;
}

static PyObject *py_quantize_nvfp4(PyObject *self, PyObject *args)
{
    PyObject *w_obj, *codes_obj, *scales_obj, *gs_obj, *given_obj, *stream_obj, *dl_stream = NULL, *result = NULL;
    owner_set owners = {{{0}}, 0};
    w4a16_view w, codes, scales, gs;
    float given = 0.0f;
    void *stream;
    w4a16_status st;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOO", &w_obj, &codes_obj, &scales_obj, &gs_obj, &given_obj, &stream_obj))
        return NULL;
    if (given_obj != Py_None) {
        given = (float)PyFloat_AsDouble(given_obj);
        if (PyErr_Occurred()) return NULL;
    }
    if (parse_stream(stream_obj, &stream, &dl_stream) < 0) goto done;
    if (import_arg(&owners, w_obj, "w", 0, dl_stream, &w) < 0 ||
        import_arg(&owners, codes_obj, "codes", 1, dl_stream, &codes) < 0 ||
        import_arg(&owners, scales_obj, "scales", 1, dl_stream, &scales) < 0 ||
        import_arg(&owners, gs_obj, "global_scale_out", 1, dl_stream, &gs) < 0)
        goto done;
    Py_BEGIN_ALLOW_THREADS
    st = w4a16_quantize_nvfp4(&w, given_obj != Py_None ? &given : NULL, &codes, &scales, &gs, stream);
    Py_END_ALLOW_THREADS
    if (st != W4A16_OK) {
        raise_status(st, "quantize_nvfp4");
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    release_all(&owners);
    Py_XDECREF(dl_stream);
    return result;
}

static PyObject *py_quantize_mxfp4(PyObject *self, PyObject *args)
{
    PyObject *w_obj, *codes_obj, *scales_obj, *stream_obj, *dl_stream = NULL, *result = NULL;
    owner_set owners = {{{0}}, 0};
    w4a16_view w, codes, scales;
    void *stream;
    w4a16_status st;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOO", &w_obj, &codes_obj, &scales_obj, &stream_obj)) return NULL;
    if (parse_stream(stream_obj, &stream, &dl_stream) < 0) goto done;
    if (import_arg(&owners, w_obj, "w", 0, dl_stream, &w) < 0 ||
        import_arg(&owners, codes_obj, "codes", 1, dl_stream, &codes) < 0 ||
        import_arg(&owners, scales_obj, "scales", 1, dl_stream, &scales) < 0)
        goto done;
    Py_BEGIN_ALLOW_THREADS
    st = w4a16_quantize_mxfp4(&w, &codes, &scales, stream);
    Py_END_ALLOW_THREADS
    if (st != W4A16_OK) {
        raise_status(st, "quantize_mxfp4");
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    release_all(&owners);
    Py_XDECREF(dl_stream);
    return result;
}

static PyObject *py_pack_int4(PyObject *self, PyObject *args)
{
    PyObject *w_obj, *codes_obj, *scales_obj, *zeros_obj, *stream_obj, *dl_stream = NULL, *result = NULL;
    owner_set owners = {{{0}}, 0};
    w4a16_view w, codes, scales, zeros;
    long long group;
    int symmetric;
    void *stream;
    w4a16_status st;
    (void)self;
    if (!PyArg_ParseTuple(args, "OLpOOOO", &w_obj, &group, &symmetric, &codes_obj, &scales_obj, &zeros_obj,
                          &stream_obj))
        return NULL;
    if (parse_stream(stream_obj, &stream, &dl_stream) < 0) goto done;
    if (import_arg(&owners, w_obj, "w", 0, dl_stream, &w) < 0 ||
        import_arg(&owners, codes_obj, "codes", 1, dl_stream, &codes) < 0 ||
        import_arg(&owners, scales_obj, "scales", 1, dl_stream, &scales) < 0 ||
        import_optional(&owners, zeros_obj, "zero_points", 1, dl_stream, &zeros) < 0)
        goto done;
    Py_BEGIN_ALLOW_THREADS
    st = w4a16_pack_int4(&w, group, symmetric, &codes, &scales, zeros.data ? &zeros : NULL, stream);
    Py_END_ALLOW_THREADS
    if (st != W4A16_OK) {
        raise_status(st, "pack_int4");
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    release_all(&owners);
    Py_XDECREF(dl_stream);
    return result;
}

static PyObject *py_dequantize(PyObject *self, PyObject *args)
{
    PyObject *weight_obj, *out_obj, *stream_obj, *dl_stream = NULL, *result = NULL;
    owner_set owners = {{{0}}, 0};
    w4a16_weight weight;
    w4a16_view out;
    void *stream;
    w4a16_status st;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!OO", &PyTuple_Type, &weight_obj, &out_obj, &stream_obj)) return NULL;
    if (parse_stream(stream_obj, &stream, &dl_stream) < 0) goto done;
    if (import_weight(&owners, weight_obj, dl_stream, &weight) < 0 ||
        import_arg(&owners, out_obj, "out", 1, dl_stream, &out) < 0)
        goto done;
    Py_BEGIN_ALLOW_THREADS
    st = w4a16_dequantize(&weight, &out, stream);
    Py_END_ALLOW_THREADS
    if (st != W4A16_OK) {
        raise_status(st, "dequantize");
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    release_all(&owners);
    Py_XDECREF(dl_stream);
    return result;
}

/* workspace: a uint8 array (any shape, contiguous) on y's device, or None */
static int import_workspace(owner_set *set, PyObject *obj, PyObject *dl_stream, const w4a16_view *y, void **data,
                            size_t *bytes)
{
    w4a16_view v;
    *data = NULL;
    *bytes = 0;
    if (import_optional(set, obj, "workspace", 1, dl_stream, &v) < 0) return -1;
    if (!v.data) return 0;
    if (v.dtype != W4A16_DTYPE_UINT8) {
        PyErr_SetString(PyExc_TypeError, "w4a16.gemm: workspace: expected a uint8 array");
        return -1;
    }
    if (v.device_type != y->device_type || v.device_id != y->device_id) {
        PyErr_Format(PyExc_ValueError,
                     "w4a16.gemm: workspace: expected an array on out's device (DLPack (%d, %d)), got (%d, %d)",
                     (int)y->device_type, (int)y->device_id, (int)v.device_type, (int)v.device_id);
        return -1;
    }
    *data = v.data;
    *bytes = 1;
    for (int i = 0; i < v.ndim; i++) *bytes *= (size_t)v.shape[i];
    return 0;
}

static PyObject *py_gemm(PyObject *self, PyObject *args)
{
    PyObject *x_obj, *weight_obj, *bias_obj, *y_obj, *stream_obj, *ws_obj, *dl_stream = NULL, *result = NULL;
    owner_set owners = {{{0}}, 0};
    w4a16_weight weight;
    w4a16_view x, bias, y;
    double alpha;
    int config, geglu = 0;
    void *stream, *workspace;
    size_t workspace_bytes;
    w4a16_status st;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO!OdOOiO|p", &x_obj, &PyTuple_Type, &weight_obj, &bias_obj, &alpha, &y_obj,
                          &stream_obj, &config, &ws_obj, &geglu))
        return NULL;
    if (parse_stream(stream_obj, &stream, &dl_stream) < 0) goto done;
    if (import_arg(&owners, x_obj, "x", 0, dl_stream, &x) < 0 ||
        import_weight(&owners, weight_obj, dl_stream, &weight) < 0 ||
        import_optional(&owners, bias_obj, "bias", 0, dl_stream, &bias) < 0 ||
        import_arg(&owners, y_obj, "out", 1, dl_stream, &y) < 0 ||
        import_workspace(&owners, ws_obj, dl_stream, &y, &workspace, &workspace_bytes) < 0)
        goto done;
    Py_BEGIN_ALLOW_THREADS
    st = (geglu ? w4a16_gemm_geglu : w4a16_gemm_config)(&x, &weight, bias.data ? &bias : NULL, (float)alpha, &y,
                                                        config, workspace, workspace_bytes, stream);
    Py_END_ALLOW_THREADS
    if (st != W4A16_OK) {
        raise_status(st, geglu ? "gemm_geglu" : "gemm");
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    release_all(&owners);
    Py_XDECREF(dl_stream);
    return result;
}

/* ---- the torch op's fast path ------------------------------------------------------- */

/* A contiguous row-major view from a raw pointer (0 = absent: data NULL). */
static void raw_view(w4a16_view *v, unsigned long long ptr, int dtype, int ndim, int64_t d0, int64_t d1,
                     int device_type, int device_id)
{
    memset(v, 0, sizeof *v);
    v->data = (void *)(uintptr_t)ptr;
    v->dtype = (w4a16_dtype)dtype;
    v->ndim = ndim;
    v->shape[0] = d0;
    v->shape[1] = d1;
    v->strides[0] = ndim == 2 ? d1 : 1;
    v->strides[1] = 1;
    v->device_type = device_type;
    v->device_id = device_id;
}

static void raw_weight(w4a16_weight *w, int format, long long group, int layout, long long n, long long k,
                       unsigned long long codes_ptr, unsigned long long scales_ptr, int scale_dtype,
                       unsigned long long gs_ptr, unsigned long long zeros_ptr, int device_type, int device_id)
{
    memset(w, 0, sizeof *w);
    w->format = (w4a16_format)format;
    w->group_size = group;
    w->layout = layout;
    raw_view(&w->codes, codes_ptr, W4A16_DTYPE_UINT8, 2, n, k / 2, device_type, device_id);
    raw_view(&w->scales, scales_ptr, scale_dtype, 2, n, k / group, device_type, device_id);
    raw_view(&w->global_scale, gs_ptr, W4A16_DTYPE_FLOAT32, 0, 0, 0, device_type, device_id);
    raw_view(&w->zero_points, zeros_ptr, W4A16_DTYPE_UINT8, 2, n, k / group, device_type, device_id);
}

/* The raw entry points trust their caller's shapes except this one arithmetic fact,
 * which the views below are built from. */
static int raw_group_ok(long long group, long long k, const char *function)
{
    if (group > 0 && k % group == 0 && k % 2 == 0) return 1;
    PyErr_Format(PyExc_ValueError, "w4a16.%s: group %lld does not divide K = %lld", function, group, k);
    return 0;
}

/* _dequantize_raw(out, out_dtype, n, k, codes, scales, scale_dtype, global_scale,
 *                 zero_points, format, group, layout, device_type, device_id, stream): the torch
 * op's large-M path writes the 16-bit weight with it. Private, like _gemm_raw. */
static PyObject *py_dequantize_raw(PyObject *self, PyObject *args)
{
    unsigned long long out_ptr, codes_ptr, scales_ptr, gs_ptr, zeros_ptr, stream_ptr;
    long long n, k, group;
    int out_dtype, scale_dtype, format, layout, device_type, device_id;
    w4a16_view out;
    w4a16_weight w;
    w4a16_status st;
    (void)self;
    if (!PyArg_ParseTuple(args, "KiLLKKiKKiLiiiK", &out_ptr, &out_dtype, &n, &k, &codes_ptr, &scales_ptr, &scale_dtype,
                          &gs_ptr, &zeros_ptr, &format, &group, &layout, &device_type, &device_id, &stream_ptr))
        return NULL;
    if (!raw_group_ok(group, k, "dequantize")) return NULL;
    raw_view(&out, out_ptr, out_dtype, 2, n, k, device_type, device_id);
    raw_weight(&w, format, group, layout, n, k, codes_ptr, scales_ptr, scale_dtype, gs_ptr, zeros_ptr, device_type,
               device_id);
    Py_BEGIN_ALLOW_THREADS
    st = w4a16_dequantize(&w, &out, (void *)(uintptr_t)stream_ptr);
    Py_END_ALLOW_THREADS
    if (st != W4A16_OK) {
        raise_status(st, "dequantize");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _gemm_raw(x, y, bias, m, n, k, act_dtype, codes, scales, scale_dtype, global_scale,
 *           zero_points, format, group, layout, alpha, config, workspace, workspace_bytes,
 *           device_type, device_id, stream, geglu)
 * The same gemm as `gemm` on raw pointers of contiguous tensors, for the torch custom
 * op, whose caller holds the tensors and checks their layout: exporting five DLPack
 * capsules per call would cost more than a small GEMV on the GPU. geglu = 1 runs
 * w4a16_gemm_geglu (y [m, n/2]). Private. */
static PyObject *py_gemm_raw(PyObject *self, PyObject *args)
{
    unsigned long long x_ptr, y_ptr, bias_ptr, codes_ptr, scales_ptr, gs_ptr, zeros_ptr, stream_ptr, ws_ptr, ws_bytes;
    long long m, n, k, group;
    int act_dtype, scale_dtype, format, layout, config, device_type, device_id, geglu = 0;
    double alpha;
    w4a16_view x, y, bias;
    w4a16_weight w;
    w4a16_status st;
    (void)self;
    if (!PyArg_ParseTuple(args, "KKKLLLiKKiKKiLidiKKiiK|p", &x_ptr, &y_ptr, &bias_ptr, &m, &n, &k, &act_dtype,
                          &codes_ptr, &scales_ptr, &scale_dtype, &gs_ptr, &zeros_ptr, &format, &group, &layout, &alpha,
                          &config, &ws_ptr, &ws_bytes, &device_type, &device_id, &stream_ptr, &geglu))
        return NULL;
    if (!raw_group_ok(group, k, "gemm")) return NULL;
    raw_view(&x, x_ptr, act_dtype, 2, m, k, device_type, device_id);
    raw_view(&y, y_ptr, act_dtype, 2, m, geglu ? n / 2 : n, device_type, device_id);
    raw_view(&bias, bias_ptr, act_dtype, 1, n, 1, device_type, device_id);
    raw_weight(&w, format, group, layout, n, k, codes_ptr, scales_ptr, scale_dtype, gs_ptr, zeros_ptr, device_type,
               device_id);
    Py_BEGIN_ALLOW_THREADS
    st = (geglu ? w4a16_gemm_geglu : w4a16_gemm_config)(&x, &w, bias_ptr ? &bias : NULL, (float)alpha, &y, config,
                                                        (void *)(uintptr_t)ws_ptr, (size_t)ws_bytes,
                                                        (void *)(uintptr_t)stream_ptr);
    Py_END_ALLOW_THREADS
    if (st != W4A16_OK) {
        raise_status(st, geglu ? "gemm_geglu" : "gemm");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _gemm_workspace_raw(x, m, n, k, act_dtype, codes, scales, scale_dtype, global_scale,
 *                     zero_points, format, group, layout, config, device_type, device_id)
 * -> bytes of workspace the gemm with `config` needs. Private, for the torch op. */
static PyObject *py_gemm_workspace_raw(PyObject *self, PyObject *args)
{
    unsigned long long x_ptr, codes_ptr, scales_ptr, gs_ptr, zeros_ptr;
    long long m, n, k, group;
    int act_dtype, scale_dtype, format, layout, config, device_type, device_id;
    w4a16_view x;
    w4a16_weight w;
    size_t bytes = 0;
    w4a16_status st;
    (void)self;
    if (!PyArg_ParseTuple(args, "KLLLiKKiKKiLiiii", &x_ptr, &m, &n, &k, &act_dtype, &codes_ptr, &scales_ptr,
                          &scale_dtype, &gs_ptr, &zeros_ptr, &format, &group, &layout, &config, &device_type,
                          &device_id))
        return NULL;
    if (!raw_group_ok(group, k, "gemm")) return NULL;
    raw_view(&x, x_ptr, act_dtype, 2, m, k, device_type, device_id);
    raw_weight(&w, format, group, layout, n, k, codes_ptr, scales_ptr, scale_dtype, gs_ptr, zeros_ptr, device_type,
               device_id);
    st = w4a16_gemm_workspace(&x, &w, config, &bytes);
    if (st != W4A16_OK) {
        raise_status(st, "gemm");
        return NULL;
    }
    return PyLong_FromSize_t(bytes);
}

/* gemm_workspace(x, weight_tuple, config) -> bytes */
static PyObject *py_gemm_workspace(PyObject *self, PyObject *args)
{
    PyObject *x_obj, *weight_obj, *result = NULL;
    owner_set owners = {{{0}}, 0};
    w4a16_weight weight;
    w4a16_view x;
    int config;
    size_t bytes = 0;
    w4a16_status st;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO!i", &x_obj, &PyTuple_Type, &weight_obj, &config)) return NULL;
    if (import_arg(&owners, x_obj, "x", 0, NULL, &x) < 0 || import_weight(&owners, weight_obj, NULL, &weight) < 0)
        goto done;
    st = w4a16_gemm_workspace(&x, &weight, config, &bytes);
    if (st != W4A16_OK) {
        raise_status(st, "gemm");
        goto done;
    }
    result = PyLong_FromSize_t(bytes);
done:
    release_all(&owners);
    return result;
}

/* prepack(format, codes, out, to_prepacked, stream) */
static PyObject *py_prepack(PyObject *self, PyObject *args)
{
    PyObject *codes_obj, *out_obj, *stream_obj, *dl_stream = NULL, *result = NULL;
    owner_set owners = {{{0}}, 0};
    w4a16_view codes, out;
    int format, to_prepacked;
    void *stream;
    w4a16_status st;
    (void)self;
    if (!PyArg_ParseTuple(args, "iOOpO", &format, &codes_obj, &out_obj, &to_prepacked, &stream_obj)) return NULL;
    if (parse_stream(stream_obj, &stream, &dl_stream) < 0) goto done;
    if (import_arg(&owners, codes_obj, "codes", 0, dl_stream, &codes) < 0 ||
        import_arg(&owners, out_obj, "out", 1, dl_stream, &out) < 0)
        goto done;
    Py_BEGIN_ALLOW_THREADS
    st = to_prepacked ? w4a16_prepack((w4a16_format)format, &codes, &out, stream)
                      : w4a16_unprepack((w4a16_format)format, &codes, &out, stream);
    Py_END_ALLOW_THREADS
    if (st != W4A16_OK) {
        raise_status(st, to_prepacked ? "prepack" : "unprepack");
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    release_all(&owners);
    Py_XDECREF(dl_stream);
    return result;
}

/* gemm_configs() -> list of config names, index = config */
static PyObject *py_gemm_configs(PyObject *self, PyObject *unused)
{
    int count = w4a16_gemm_config_count(), i;
    PyObject *list = PyList_New(count);
    (void)self;
    (void)unused;
    if (!list) return NULL;
    for (i = 0; i < count; i++) {
        PyObject *name = PyUnicode_FromString(w4a16_gemm_config_name(i));
        if (!name) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, name);
    }
    return list;
}

/* ---- build facts -------------------------------------------------------------------- */

static PyObject *devices_list(void)
{
    PyObject *list = PyList_New(0);
#if defined(W4A16_WITH_CUDA)
    int count = w4a16_cuda_device_count(), i;
    for (i = 0; list && i < count; i++) {
        char name[256];
        int major = 0, minor = 0;
        size_t memory = 0;
        PyObject *item;
        if (w4a16_cuda_device_info(i, name, sizeof name, &major, &minor, &memory) != 0) continue;
        item = Py_BuildValue("{s:i,s:s,s:(ii),s:K}", "index", i, "name", name, "capability", major, minor,
                             "memory_bytes", (unsigned long long)memory);
        if (!item || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(item);
    }
#endif
    return list;
}

static PyObject *py_build_info(PyObject *self, PyObject *unused)
{
    PyObject *devices = devices_list(), *info;
    int runtime = 0;
    (void)self;
    (void)unused;
    if (!devices) return NULL;
#if defined(W4A16_WITH_CUDA)
    runtime = w4a16_cuda_runtime_version();
#endif
    info = Py_BuildValue("{s:s,s:O,s:s,s:i,s:N}", "version", w4a16_version(), "cuda",
                         w4a16_has_cuda() ? Py_True : Py_False, "cuda_archs", w4a16_cuda_archs(), "cuda_runtime",
                         runtime, "devices", devices);
    return info;
}

/* ---- codec test hook ------------------------------------------------------------------ */

/* The biased E2M1 magnitude as the float it is the bits of, 2^23 + code. */
static float e2m1_magnitude_biased_as_float(float q) { return w4a16_bits_f32(w4a16_e2m1_magnitude_biased(q)); }

/* _codec(kind, src, dst): applies one scalar codec of codecs.h elementwise, so tests can
 * compare the exact C functions with an independent oracle. CPU, contiguous only. The
 * kind "div_by_reciprocal" takes (x, d) pairs: src has twice dst's length. */
static PyObject *py_codec(PyObject *self, PyObject *args)
{
    const char *kind;
    PyObject *src_obj, *dst_obj, *result = NULL;
    owner_set owners = {{{0}}, 0};
    w4a16_view src, dst;
    int64_t n = 1, i;
    int d, pairs;
    (void)self;
    if (!PyArg_ParseTuple(args, "sOO", &kind, &src_obj, &dst_obj)) return NULL;
    if (import_arg(&owners, src_obj, "src", 0, NULL, &src) < 0 || import_arg(&owners, dst_obj, "dst", 1, NULL, &dst) < 0)
        goto done;
    for (d = 0; d < src.ndim; d++) n *= src.shape[d];
    pairs = strcmp(kind, "div_by_reciprocal") == 0; /* src: x0, d0, x1, d1, ...; dst: x / d */
    if (src.ndim != 1 || dst.ndim != 1 || dst.shape[0] * (pairs ? 2 : 1) != n || src.strides[0] != 1 || dst.strides[0] != 1 ||
        src.device_type != W4A16_DEVICE_CPU || dst.device_type != W4A16_DEVICE_CPU) {
        PyErr_SetString(PyExc_ValueError, "_codec: src and dst must be 1-D contiguous CPU arrays of one length "
                                          "(src twice as long for div_by_reciprocal)");
        goto done;
    }
    if (pairs) { /* x / d as the GPU NVFP4 quantizer divides: through the reciprocal */
        const float *s = (const float *)src.data;
        float *o = (float *)dst.data;
        if (src.dtype != W4A16_DTYPE_FLOAT32 || dst.dtype != W4A16_DTYPE_FLOAT32) {
            PyErr_SetString(PyExc_ValueError, "_codec: div_by_reciprocal takes and gives float32");
            goto done;
        }
        for (i = 0; i < n / 2; i++) {
            const float y = 1.0f / s[2 * i + 1];
            o[i] = w4a16_div_by_reciprocal(s[2 * i], s[2 * i + 1], y, w4a16_reciprocal_remainder(s[2 * i + 1], y));
        }
        result = Py_NewRef(Py_None);
        goto done;
    }
#define CODEC_CASE(NAME, SRC_T, DST_T, EXPR)                                         \
    if (strcmp(kind, NAME) == 0) {                                                   \
        const SRC_T *s = (const SRC_T *)src.data;                                    \
        DST_T *o = (DST_T *)dst.data;                                                \
        for (i = 0; i < n; i++) o[i] = EXPR(s[i]);                                    \
        result = Py_NewRef(Py_None);                                                 \
        goto done;                                                                   \
    }
    CODEC_CASE("e2m1_encode", float, uint8_t, w4a16_e2m1_encode)
    CODEC_CASE("e2m1_decode", uint8_t, float, w4a16_e2m1_decode)
    CODEC_CASE("e2m1_magnitude_biased", float, float, e2m1_magnitude_biased_as_float)
    CODEC_CASE("e4m3_encode", float, uint8_t, w4a16_e4m3_encode)
    CODEC_CASE("e4m3_decode", uint8_t, float, w4a16_e4m3_decode)
    CODEC_CASE("e8m0_decode", uint8_t, float, w4a16_e8m0_decode)
    CODEC_CASE("f16_encode", float, uint16_t, w4a16_f32_to_f16)
    CODEC_CASE("f16_decode", uint16_t, float, w4a16_f16_to_f32)
    CODEC_CASE("bf16_encode", float, uint16_t, w4a16_f32_to_bf16)
    CODEC_CASE("bf16_decode", uint16_t, float, w4a16_bf16_to_f32)
#undef CODEC_CASE
    PyErr_Format(PyExc_ValueError, "_codec: unknown kind '%s'", kind);
done:
    release_all(&owners);
    return result;
}

static PyMethodDef methods[] = {
    {"quantize_nvfp4", py_quantize_nvfp4, METH_VARARGS,
     "quantize_nvfp4(w, codes, scales, global_scale_out, global_scale, stream)"},
    {"quantize_mxfp4", py_quantize_mxfp4, METH_VARARGS, "quantize_mxfp4(w, codes, scales, stream)"},
    {"pack_int4", py_pack_int4, METH_VARARGS, "pack_int4(w, group, symmetric, codes, scales, zero_points, stream)"},
    {"dequantize", py_dequantize, METH_VARARGS, "dequantize(weight_tuple, out, stream)"},
    {"gemm", py_gemm, METH_VARARGS, "gemm(x, weight_tuple, bias, alpha, out, stream, config, workspace[, geglu])"},
    {"gemm_workspace", py_gemm_workspace, METH_VARARGS, "gemm_workspace(x, weight_tuple, config) -> bytes"},
    {"_gemm_workspace_raw", py_gemm_workspace_raw, METH_VARARGS, "_gemm_workspace_raw(...): workspace bytes, raw pointers"},
    {"gemm_configs", py_gemm_configs, METH_NOARGS, "gemm_configs() -> names of the CUDA gemm configs"},
    {"prepack", py_prepack, METH_VARARGS, "prepack(format, codes, out, to_prepacked, stream)"},
    {"_gemm_raw", py_gemm_raw, METH_VARARGS, "_gemm_raw(...): gemm on raw pointers (the torch op's fast path)"},
    {"_dequantize_raw", py_dequantize_raw, METH_VARARGS, "_dequantize_raw(...): dequantize on raw pointers"},
    {"build_info", py_build_info, METH_NOARGS, "build_info() -> dict of build facts and visible GPUs"},
    {"_codec", py_codec, METH_VARARGS, "_codec(kind, src, dst): elementwise scalar codec (for tests)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "w4a16._C", "w4a16 C core: quantizers, dequantizer, gemm over DLPack tensors.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__C(void)
{
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddIntConstant(m, "FORMAT_NVFP4", W4A16_FORMAT_NVFP4) < 0 ||
        PyModule_AddIntConstant(m, "FORMAT_MXFP4", W4A16_FORMAT_MXFP4) < 0 ||
        PyModule_AddIntConstant(m, "FORMAT_INT4", W4A16_FORMAT_INT4) < 0 ||
        PyModule_AddIntConstant(m, "LAYOUT_CANONICAL", W4A16_LAYOUT_CANONICAL) < 0 ||
        PyModule_AddIntConstant(m, "LAYOUT_PREPACKED", W4A16_LAYOUT_PREPACKED) < 0 ||
        PyModule_AddIntConstant(m, "GEMM_AUTO", W4A16_GEMM_AUTO) < 0 ||
        PyModule_AddIntConstant(m, "DTYPE_FLOAT32", W4A16_DTYPE_FLOAT32) < 0 ||
        PyModule_AddIntConstant(m, "DTYPE_FLOAT16", W4A16_DTYPE_FLOAT16) < 0 ||
        PyModule_AddIntConstant(m, "DTYPE_UINT8", W4A16_DTYPE_UINT8) < 0 ||
        PyModule_AddIntConstant(m, "DTYPE_BFLOAT16", W4A16_DTYPE_BFLOAT16) < 0 ||
        PyModule_AddIntConstant(m, "DTYPE_FLOAT8_E4M3FN", W4A16_DTYPE_FLOAT8_E4M3FN) < 0 ||
        PyModule_AddIntConstant(m, "DTYPE_FLOAT8_E8M0", W4A16_DTYPE_FLOAT8_E8M0) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
