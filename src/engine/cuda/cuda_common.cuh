// Shared CUDA helpers of ql_cuda: error checks that throw quantlens::Error, an owning device
// buffer, and the 16-bit storage types with their float conversions. Usable from .cu and
// host-only .cpp files alike.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

namespace quantlens::cuda {

// Failures throw quantlens::Error through check_cuda/check_cublas (cuda_util.cpp), so the
// .cu files never parse fmt.
#define QL_CUDA(call) ::quantlens::cuda::check_cuda((call), #call)
#define QL_CUBLAS(call) ::quantlens::cuda::check_cublas((call), #call)
// Checks the last kernel launch (execution errors surface at the next synchronizing call).
#define QL_CUDA_LAUNCH() QL_CUDA(cudaGetLastError())

// Dispatches a kernel template on the storage type `dt` (a Dtype of cuda_kernels.h), with T
// the element type inside KERNEL_CALL, then checks the launch.
#define QL_DISPATCH(dt, KERNEL_CALL)     \
    do {                                 \
        if ((dt) == Dtype::BF16) {       \
            using T = __nv_bfloat16;     \
            KERNEL_CALL;                 \
        } else if ((dt) == Dtype::F16) { \
            using T = __half;            \
            KERNEL_CALL;                 \
        } else {                         \
            using T = float;             \
            KERNEL_CALL;                 \
        }                                \
        QL_CUDA_LAUNCH();                \
    } while (0)

void check_cuda(cudaError_t err, const char* what);
void check_cublas(cublasStatus_t status, const char* what);
// Samples the device's memory in use (cudaMemGetInfo) into the process's peak
// (cuda_engine.h's peak_device_bytes): after every allocation and synchronization.
void note_device_usage();

// Owning device allocation of raw bytes.
class DeviceBuffer {
  public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(size_t bytes) { resize(bytes); }
    ~DeviceBuffer() { reset(); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    DeviceBuffer(DeviceBuffer&& o) noexcept
        : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        if (this != &o) {
            reset();
            ptr_ = std::exchange(o.ptr_, nullptr);
            bytes_ = std::exchange(o.bytes_, 0);
        }
        return *this;
    }
    // Reallocates (contents lost) when `bytes` exceeds the capacity.
    void resize(size_t bytes) {
        if (bytes <= bytes_) return;
        reset();
        if (bytes == 0) return;
        QL_CUDA(cudaMalloc(&ptr_, bytes));
        bytes_ = bytes;
        note_device_usage();
    }
    void reset() {
        if (ptr_) cudaFree(ptr_);
        ptr_ = nullptr;
        bytes_ = 0;
    }
    template <typename T = void>
    T* as() const {
        return static_cast<T*>(ptr_);
    }
    size_t bytes() const { return bytes_; }
    explicit operator bool() const { return ptr_ != nullptr; }

  private:
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
};

// A device copy of `count` host values, kept for the life of the process (lookup tables).
template <typename T>
const T* upload_for_process(const T* host, size_t count) {
    void* dev = nullptr;
    QL_CUDA(cudaMalloc(&dev, count * sizeof(T)));
    QL_CUDA(cudaMemcpy(dev, host, count * sizeof(T), cudaMemcpyHostToDevice));
    return static_cast<const T*>(dev);
}

__host__ __device__ inline float to_f32(float x) {
    return x;
}
__device__ inline float to_f32(__nv_bfloat16 x) {
    return __bfloat162float(x);
}
__device__ inline float to_f32(__half x) {
    return __half2float(x);
}

template <typename T>
__device__ inline T from_f32(float x);
template <>
__device__ inline float from_f32<float>(float x) {
    return x;
}
template <>
__device__ inline __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}
template <>
__device__ inline __half from_f32<__half>(float x) {
    return __float2half_rn(x);
}

template <typename T>
constexpr cudaDataType_t cuda_type();
template <>
constexpr cudaDataType_t cuda_type<float>() {
    return CUDA_R_32F;
}
template <>
constexpr cudaDataType_t cuda_type<__nv_bfloat16>() {
    return CUDA_R_16BF;
}
template <>
constexpr cudaDataType_t cuda_type<__half>() {
    return CUDA_R_16F;
}

inline unsigned grid_for(int64_t n, int threads, int64_t cap = 65535LL * 32) {
    int64_t g = (n + threads - 1) / threads;
    if (g > cap) g = cap;
    return static_cast<unsigned>(g < 1 ? 1 : g);
}

}  // namespace quantlens::cuda
