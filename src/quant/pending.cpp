// Formats whose kernels are not written yet: they throw, so a missing type is loud (the
// golden test lists it as failing) rather than silently wrong. Remove a line when its
// kernels land in their own file.
#include "core/error.h"
#include "quant/kernels.h"

namespace quantlens::kernels {

#define QL_PENDING(t)                                                                     \
    void quantize_rows_##t(const float*, void*, int64_t, int64_t, const float*) {         \
        fail("quantization type " #t " is not implemented yet");                          \
    }                                                                                     \
    void dequantize_row_##t(const void*, float*, int64_t) {                               \
        fail("quantization type " #t " is not implemented yet");                          \
    }


}  // namespace quantlens::kernels
