// The peak-memory line eval, verify, compare, calibrate and sweep print at the end: host RSS
// high-water mark, and with a CUDA build that used the GPU, the device's peak in use.
#pragma once

#include <fmt/format.h>

#include <string>

#include "core/peak_memory.h"
#ifdef QL_HAVE_CUDA
#include "engine/cuda/cuda_engine.h"
#endif

namespace quantlens::cli {

// The device's memory in use at its peak (every process's, cudaMemGetInfo), 0 without a GPU.
inline int64_t peak_gpu_bytes() {
#ifdef QL_HAVE_CUDA
    return cuda::peak_device_bytes();
#else
    return 0;
#endif
}

inline std::string peak_memory_text() {
    std::string s = fmt::format("{} host (RSS high-water mark)", peak_rss_text());
    if (const int64_t gpu = peak_gpu_bytes(); gpu > 0)
        s += fmt::format(", {:.2f} GB GPU (in use, peak seen)", static_cast<double>(gpu) / 1e9);
    return s;
}

}  // namespace quantlens::cli
