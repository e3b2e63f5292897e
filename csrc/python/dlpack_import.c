/*
 * dlpack_import.c — the consumer side of the Python DLPack protocol.
 *
 * Protocol (https://dmlc.github.io/dlpack/latest/python_spec.html), as followed here:
 *  1. __dlpack_device__() says where the data lives; for CUDA the consumer passes its
 *     stream to __dlpack__ so the producer can order its pending work before ours.
 *  2. __dlpack__(max_version=(1, 1)) asks for a versioned capsule "dltensor_versioned";
 *     a producer that predates versioning raises TypeError for the keyword, and we ask
 *     again without it for a legacy "dltensor" capsule.
 *  3. A versioned tensor with a major version other than 1 is refused without touching
 *     the capsule (its destructor then frees it).
 *  4. Taking ownership = renaming the capsule to "used_dltensor[_versioned]"; from then
 *     on the capsule destructor ignores it and we must call the deleter exactly once.
 *  5. byte_offset is added to data; NULL strides mean compact row-major; the read-only
 *     flag (versioned only) is honoured for outputs.
 */
#include <string.h>

#include "core.h"
#include "dlpack.h"
#include "dlpack_import.h"

void w4a16_dl_release(w4a16_dl_owner *owner)
{
    if (!owner->managed) return;
    if (owner->versioned) {
        DLManagedTensorVersioned *m = (DLManagedTensorVersioned *)owner->managed;
        if (m->deleter) m->deleter(m);
    } else {
        DLManagedTensor *m = (DLManagedTensor *)owner->managed;
        if (m->deleter) m->deleter(m);
    }
    owner->managed = NULL;
}

static w4a16_dtype dtype_from_dlpack(DLDataType t)
{
    if (t.lanes != 1) return W4A16_DTYPE_INVALID;
    if (t.code == kDLFloat && t.bits == 32) return W4A16_DTYPE_FLOAT32;
    if (t.code == kDLFloat && t.bits == 16) return W4A16_DTYPE_FLOAT16;
    if (t.code == kDLBfloat && t.bits == 16) return W4A16_DTYPE_BFLOAT16;
    if (t.code == kDLUInt && t.bits == 8) return W4A16_DTYPE_UINT8;
    if (t.code == kDLFloat8_e4m3fn && t.bits == 8) return W4A16_DTYPE_FLOAT8_E4M3FN;
    if (t.code == kDLFloat8_e8m0fnu && t.bits == 8) return W4A16_DTYPE_FLOAT8_E8M0;
    return W4A16_DTYPE_INVALID;
}

/* Calls obj.__dlpack_device__(); returns 0 and the device type, or -1 with an exception. */
static int query_device(PyObject *obj, const char *name, int32_t *device_type)
{
    PyObject *dev = PyObject_CallMethod(obj, "__dlpack_device__", NULL);
    long type;
    if (!dev) return -1;
    if (!PyTuple_Check(dev) || PyTuple_GET_SIZE(dev) != 2) {
        Py_DECREF(dev);
        PyErr_Format(PyExc_TypeError, "%s: __dlpack_device__() must return a (type, id) tuple", name);
        return -1;
    }
    type = PyLong_AsLong(PyTuple_GET_ITEM(dev, 0));
    Py_DECREF(dev);
    if (type == -1 && PyErr_Occurred()) return -1;
    *device_type = (int32_t)type;
    return 0;
}

/* Returns a new reference to the capsule from obj.__dlpack__, negotiating the version. */
static PyObject *request_capsule(PyObject *obj, const char *name, PyObject *stream)
{
    PyObject *method = NULL, *args = NULL, *kwargs = NULL, *version = NULL, *capsule = NULL;
    int32_t device_type = kDLCPU;

    method = PyObject_GetAttrString(obj, "__dlpack__");
    if (!method) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError,
                     "%s: expected an array that supports DLPack (torch, numpy, cupy, jax), got %s", name,
                     Py_TYPE(obj)->tp_name);
        goto done;
    }
    if (PyObject_HasAttrString(obj, "__dlpack_device__") && query_device(obj, name, &device_type) < 0) goto done;
    args = PyTuple_New(0);
    kwargs = PyDict_New();
    version = Py_BuildValue("(ii)", W4A16_DLPACK_MAJOR, W4A16_DLPACK_MINOR);
    if (!args || !kwargs || !version) goto done;
    if (device_type == kDLCUDA && stream && stream != Py_None &&
        PyDict_SetItemString(kwargs, "stream", stream) < 0)
        goto done;
    if (PyDict_SetItemString(kwargs, "max_version", version) < 0) goto done;
    capsule = PyObject_Call(method, args, kwargs);
    if (!capsule && PyErr_ExceptionMatches(PyExc_TypeError)) {
        /* a producer from before DLPack 1.0 does not know max_version: ask for legacy */
        PyErr_Clear();
        if (PyDict_DelItemString(kwargs, "max_version") < 0) goto done;
        capsule = PyObject_Call(method, args, kwargs);
    }
done:
    Py_XDECREF(version);
    Py_XDECREF(kwargs);
    Py_XDECREF(args);
    Py_XDECREF(method);
    return capsule;
}

/* Fills `view` from a DLTensor. Returns 0, or -1 with a Python exception set. */
static int view_from_dltensor(const DLTensor *t, const char *name, int dtype_override, w4a16_view *view)
{
    w4a16_dtype dtype = dtype_from_dlpack(t->dtype);
    int64_t stride = 1;
    int i;

    if (t->ndim < 0 || t->ndim > W4A16_MAX_DIMS) {
        PyErr_Format(PyExc_ValueError, "%s: has %d dimensions; w4a16 takes at most %d", name, (int)t->ndim,
                     W4A16_MAX_DIMS);
        return -1;
    }
    if (dtype_override >= 0) {
        /* reinterpretation is only allowed between element types of the same size */
        if (t->dtype.lanes != 1 || (size_t)t->dtype.bits != 8 * w4a16_dtype_size((w4a16_dtype)dtype_override)) {
            PyErr_Format(PyExc_TypeError, "%s: cannot view %d-bit elements as %s", name, (int)t->dtype.bits,
                         w4a16_dtype_name((w4a16_dtype)dtype_override));
            return -1;
        }
        dtype = (w4a16_dtype)dtype_override;
    }
    if (dtype == W4A16_DTYPE_INVALID) {
        PyErr_Format(PyExc_TypeError,
                     "%s: DLPack dtype (code %d, %d bits, %d lanes) is not one w4a16 reads "
                     "(float32, float16, bfloat16, uint8, float8_e4m3fn, float8_e8m0fnu)",
                     name, (int)t->dtype.code, (int)t->dtype.bits, (int)t->dtype.lanes);
        return -1;
    }
    memset(view, 0, sizeof *view);
    view->data = t->data ? (char *)t->data + t->byte_offset : NULL;
    view->dtype = dtype;
    view->ndim = t->ndim;
    view->device_type = t->device.device_type;
    view->device_id = t->device.device_id;
    for (i = t->ndim - 1; i >= 0; i--) {
        view->shape[i] = t->shape[i];
        view->strides[i] = t->strides ? t->strides[i] : stride;
        stride *= t->shape[i];
    }
    return 0;
}

int w4a16_dl_import(PyObject *obj, const char *name, int writable, PyObject *stream, w4a16_view *view,
                    w4a16_dl_owner *owner)
{
    PyObject *capsule = NULL;
    const DLTensor *tensor;
    int dtype_override = -1, status = -1;

    owner->managed = NULL;
    owner->versioned = 0;
    if (PyTuple_Check(obj)) {
        if (PyTuple_GET_SIZE(obj) != 2 || !PyLong_Check(PyTuple_GET_ITEM(obj, 1))) {
            PyErr_Format(PyExc_TypeError, "%s: expected an array or an (array, dtype) pair", name);
            return -1;
        }
        dtype_override = (int)PyLong_AsLong(PyTuple_GET_ITEM(obj, 1));
        obj = PyTuple_GET_ITEM(obj, 0);
    }
    capsule = request_capsule(obj, name, stream);
    if (!capsule) goto done;

    if (PyCapsule_IsValid(capsule, DLPACK_VERSIONED_CAPSULE_NAME)) {
        DLManagedTensorVersioned *m =
            (DLManagedTensorVersioned *)PyCapsule_GetPointer(capsule, DLPACK_VERSIONED_CAPSULE_NAME);
        if (!m) goto done;
        if (m->version.major != W4A16_DLPACK_MAJOR) {
            /* not ours to take: leave the capsule named as it is so its destructor frees it */
            PyErr_Format(PyExc_BufferError, "%s: DLPack version %u.%u is not supported (need 1.x)", name,
                         (unsigned)m->version.major, (unsigned)m->version.minor);
            goto done;
        }
        if (PyCapsule_SetName(capsule, DLPACK_USED_VERSIONED_CAPSULE_NAME) < 0) goto done;
        owner->managed = m;
        owner->versioned = 1;
        if (writable && (m->flags & DLPACK_FLAG_BITMASK_READ_ONLY)) {
            PyErr_Format(PyExc_ValueError, "%s: is read-only; outputs must be writable", name);
            goto done;
        }
        tensor = &m->dl_tensor;
    } else if (PyCapsule_IsValid(capsule, DLPACK_CAPSULE_NAME)) {
        DLManagedTensor *m = (DLManagedTensor *)PyCapsule_GetPointer(capsule, DLPACK_CAPSULE_NAME);
        if (!m) goto done;
        if (PyCapsule_SetName(capsule, DLPACK_USED_CAPSULE_NAME) < 0) goto done;
        owner->managed = m;
        owner->versioned = 0;
        tensor = &m->dl_tensor;
    } else {
        PyErr_Format(PyExc_TypeError, "%s: __dlpack__ returned %s, not an unused DLPack capsule", name,
                     Py_TYPE(capsule)->tp_name);
        goto done;
    }
    status = view_from_dltensor(tensor, name, dtype_override, view);
done:
    if (status < 0) w4a16_dl_release(owner);
    Py_XDECREF(capsule);
    return status;
}
