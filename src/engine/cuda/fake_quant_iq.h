// Internal to the fake-quant kernels: the i-quant launchers of fake_quant_iq.cu, called by
// fake_quant.cu's dispatch, and the IQ3_S search tables they read on the device.
#pragma once

#include <cstdint>

#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/fake_quant.h"

namespace quantlens::cuda {

// quant/iq_grids.h's IqGrid for IQ3_S in device memory, uploaded once per device on first use
// and held for the life of the process (fake_quant_iq_tables.cpp).
struct Iq3sDeviceTables {
    const int32_t* map;          // (4096) packed 3-bit levels → grid index, or -(offset+1)
    const uint16_t* neighbours;  // at offset: count, then that many grid indices
    const uint32_t* points;      // (512) the 4 odd coordinates 2*level+1 of a point, one a byte
};
const Iq3sDeviceTables& iq3s_device_tables();

// dst[n] ← dequantize(quantize(src[n])), n a multiple of 256 (device pointers); the importance
// path when imp.values is set.
template <typename T>
void launch_fake_quant_iq4_xs(const T* src, T* dst, int64_t n, const FakeQuantImportance& imp);
template <typename T>
void launch_fake_quant_iq3_s(const T* src, T* dst, int64_t n, const FakeQuantImportance& imp);

}  // namespace quantlens::cuda
