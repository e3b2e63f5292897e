/* dlpack_import.h — turning Python objects with __dlpack__ into w4a16_views. */
#ifndef W4A16_DLPACK_IMPORT_H
#define W4A16_DLPACK_IMPORT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "w4a16.h"

/* The DLPack managed tensor a view borrows from; released (deleter called) once the
 * call that imported it is done. An empty owner (managed == NULL) releases nothing. */
typedef struct {
    void *managed;
    int versioned;
} w4a16_dl_owner;

/*
 * Imports `obj` into `view`. `obj` is an object with __dlpack__, or a tuple
 * (object, dtype) where dtype is a w4a16_dtype that reinterprets storage of the same
 * element size (numpy has no native bfloat16 / float8: the Python layer passes a uint16
 * or uint8 view of an ml_dtypes array with the real dtype beside it).
 * `stream` (a Python int or None) is handed to __dlpack__ for CUDA producers.
 * `writable` rejects read-only tensors. On failure: sets a Python exception naming
 * `name`, leaves `owner` empty, returns -1.
 */
int w4a16_dl_import(PyObject *obj, const char *name, int writable, PyObject *stream, w4a16_view *view,
                    w4a16_dl_owner *owner);

/* Calls the producer's deleter (needs the GIL: deleters may touch Python objects). */
void w4a16_dl_release(w4a16_dl_owner *owner);

#endif /* W4A16_DLPACK_IMPORT_H */
