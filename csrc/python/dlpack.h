/*
 * dlpack.h — the DLPack ABI (v1.1) structures that w4a16 consumes, written from the
 * specification: https://dmlc.github.io/dlpack/latest/ . Only what the importer needs.
 */
#ifndef W4A16_DLPACK_H
#define W4A16_DLPACK_H

#include <stdint.h>

#define W4A16_DLPACK_MAJOR 1
#define W4A16_DLPACK_MINOR 1

/* capsule names: a producer hands out the first, a consumer that takes ownership
 * renames the capsule to the second so that the capsule's destructor leaves it alone */
#define DLPACK_CAPSULE_NAME "dltensor"
#define DLPACK_USED_CAPSULE_NAME "used_dltensor"
#define DLPACK_VERSIONED_CAPSULE_NAME "dltensor_versioned"
#define DLPACK_USED_VERSIONED_CAPSULE_NAME "used_dltensor_versioned"

#define DLPACK_FLAG_BITMASK_READ_ONLY (1ULL << 0)
#define DLPACK_FLAG_BITMASK_IS_COPIED (1ULL << 1)

typedef enum { kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLCUDAManaged = 13 } DLDeviceType;

typedef struct {
    int32_t device_type; /* DLDeviceType; an int32 in the ABI */
    int32_t device_id;
} DLDevice;

typedef enum {
    kDLInt = 0,
    kDLUInt = 1,
    kDLFloat = 2,
    kDLBfloat = 4,
    kDLBool = 6,
    kDLFloat8_e4m3fn = 10,
    kDLFloat8_e8m0fnu = 14,
} DLDataTypeCode;

typedef struct {
    uint8_t code;
    uint8_t bits;
    uint16_t lanes;
} DLDataType;

typedef struct {
    void *data;
    DLDevice device;
    int32_t ndim;
    DLDataType dtype;
    int64_t *shape;
    int64_t *strides; /* in elements; NULL means compact row-major */
    uint64_t byte_offset;
} DLTensor;

typedef struct DLManagedTensor {
    DLTensor dl_tensor;
    void *manager_ctx;
    void (*deleter)(struct DLManagedTensor *self);
} DLManagedTensor;

typedef struct {
    uint32_t major;
    uint32_t minor;
} DLPackVersion;

typedef struct DLManagedTensorVersioned {
    DLPackVersion version;
    void *manager_ctx;
    void (*deleter)(struct DLManagedTensorVersioned *self);
    uint64_t flags;
    DLTensor dl_tensor;
} DLManagedTensorVersioned;

#endif /* W4A16_DLPACK_H */
