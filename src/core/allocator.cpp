#include "core/allocator.h"

#include <cstdlib>  // defines __GLIBC__ on glibc systems

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace quantlens {

void keep_large_buffers_in_heap() {
#if defined(__GLIBC__)
    // 1 GiB: above any per-layer buffer of the models we evaluate on CPU; setting it also
    // turns off glibc's dynamic threshold, which stops growing at 32 MiB (logits are larger).
    constexpr int kThreshold = 1 << 30;
    mallopt(M_MMAP_THRESHOLD, kThreshold);
    mallopt(M_TRIM_THRESHOLD, kThreshold);
#endif
}

}  // namespace quantlens
