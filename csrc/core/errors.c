/* errors.c — the thread-local last-error message of the C API. */
#include <stdio.h>

#include "core.h"

#if defined(_MSC_VER)
#define W4A16_THREAD_LOCAL __declspec(thread)
#else
#define W4A16_THREAD_LOCAL _Thread_local
#endif

/* One buffer per thread: concurrent callers never see each other's messages. */
static W4A16_THREAD_LOCAL char last_error[512];

w4a16_status w4a16_fail(w4a16_status status, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, args);
    va_end(args);
    return status;
}

void w4a16_clear_error(void) { last_error[0] = '\0'; }

const char *w4a16_last_error(void) { return last_error; }

const char *w4a16_status_name(w4a16_status status)
{
    switch (status) {
    case W4A16_OK: return "ok";
    case W4A16_ERR_INVALID_ARGUMENT: return "invalid argument";
    case W4A16_ERR_DTYPE: return "wrong dtype";
    case W4A16_ERR_SHAPE: return "wrong shape";
    case W4A16_ERR_LAYOUT: return "wrong layout";
    case W4A16_ERR_DEVICE: return "wrong device";
    case W4A16_ERR_VALUE: return "invalid value";
    case W4A16_ERR_UNSUPPORTED: return "unsupported";
    case W4A16_ERR_CUDA: return "CUDA error";
    case W4A16_ERR_NO_MEMORY: return "out of memory";
    }
    return "unknown status";
}
