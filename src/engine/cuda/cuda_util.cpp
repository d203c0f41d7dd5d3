// Error translation for ql_cuda (see cuda_common.cuh) and the device queries of cuda_engine.h.
#include <fmt/format.h>

#include <atomic>

#include "core/error.h"
#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/cuda_engine.h"

namespace quantlens::cuda {

void check_cuda(cudaError_t err, const char* what) {
    if (err != cudaSuccess)
        fail("CUDA error in {}: {} ({})", what, cudaGetErrorString(err), static_cast<int>(err));
}

void check_cublas(cublasStatus_t status, const char* what) {
    if (status != CUBLAS_STATUS_SUCCESS)
        fail("cuBLAS error in {}: {} ({})", what, cublasGetStatusString(status),
             static_cast<int>(status));
}

namespace {
std::atomic<int64_t> peak_used{0};
}

void note_device_usage() {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
        cudaGetLastError();
        return;
    }
    const auto used = static_cast<int64_t>(total_b - free_b);
    int64_t seen = peak_used.load();
    while (used > seen && !peak_used.compare_exchange_weak(seen, used)) {
    }
}

int64_t peak_device_bytes() {
    return peak_used.load();
}

bool device_available(std::string* why) {
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess || n == 0) {
        if (why)
            *why = err != cudaSuccess
                       ? fmt::format("no usable CUDA device ({})", cudaGetErrorString(err))
                       : std::string("no CUDA device present");
        cudaGetLastError();  // clear the sticky error so later calls report their own
        return false;
    }
    return true;
}

std::string device_description() {
    int dev = 0, runtime = 0, driver = 0;
    QL_CUDA(cudaGetDevice(&dev));
    cudaDeviceProp p{};
    QL_CUDA(cudaGetDeviceProperties(&p, dev));
    QL_CUDA(cudaRuntimeGetVersion(&runtime));
    QL_CUDA(cudaDriverGetVersion(&driver));
    return fmt::format("{}, {} SMs, {:.1f} GiB, sm_{}{}, runtime {}.{}, driver {}.{}", p.name,
                       p.multiProcessorCount, static_cast<double>(p.totalGlobalMem) / (1 << 30),
                       p.major, p.minor, runtime / 1000, (runtime % 1000) / 10, driver / 1000,
                       (driver % 1000) / 10);
}

}  // namespace quantlens::cuda
