// Uploads the IQ3_S search tables (quant/iq_grids.h, built by the CPU path) to the GPU for
// fake_quant_iq.cu, once per device. Host-only: iq_grids.h pulls in fmt, which the .cu files
// do not parse.
#include <array>
#include <cstring>
#include <mutex>

#include "core/error.h"
#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/fake_quant_iq.h"
#include "quant/iq_grids.h"
#include "quant/tables_generated.h"

namespace quantlens::cuda {
namespace {

Iq3sDeviceTables build() {
    using kernels::iq::GridKind;
    const kernels::iq::IqGrid& g = kernels::iq::iq_grid(GridKind::Iq3s);
    QL_ASSERT(g.n_points == 512 && g.dim == 4 && g.bits == 3 && g.map.size() == 4096);
    // The search's points are the dequantization grid's bytes, so one table serves both.
    static_assert(sizeof tables::iq3s_grid == 512 * 4);
    QL_ASSERT(std::memcmp(g.points.data(), tables::iq3s_grid, 512 * 4) == 0);
    Iq3sDeviceTables t;
    t.map = upload_for_process(g.map.data(), g.map.size());
    t.neighbours = upload_for_process(g.neighbours.data(), g.neighbours.size());
    t.points = upload_for_process(tables::iq3s_grid, 512);
    return t;
}

}  // namespace

const Iq3sDeviceTables& iq3s_device_tables() {
    // Never freed: the kernels may run until exit, when the driver reclaims the memory.
    constexpr int kMaxDevices = 64;
    static std::array<Iq3sDeviceTables, kMaxDevices> per_device{};
    static std::mutex mu;
    int device = 0;
    QL_CUDA(cudaGetDevice(&device));
    QL_ASSERT(device >= 0 && device < kMaxDevices);
    std::lock_guard<std::mutex> lock(mu);
    if (!per_device[device].map) per_device[device] = build();
    return per_device[device];
}

}  // namespace quantlens::cuda
