// GPU fake quantization of the i-quants IQ4_XS and IQ3_S, with or without importance: ports of
// quant/iq4.cpp (quantize_iq4_super) and quant/iq3.cpp (quantize_iq3_s_block, with
// search_sub_block and iq_grids.h's snap_to_grid) followed by their dequantization.
//
// Layout: one thread per 32-weight sub-block, 8 lanes per 256-weight super-block (n is a
// multiple of 256, blocks of 256 threads, so a super-block never straddles a warp); the
// super-scale is a shuffle over the 8 lanes. Every expression keeps the CPU's operand order
// and this file is compiled with --fmad=false, so the output matches fake_quantize bit for bit
// on the same 16-bit input (before the final rounding to the storage type).
#include <cfloat>

#include "engine/cuda/fake_quant_common.cuh"
#include "engine/cuda/fake_quant_iq.h"
#include "quant/tables_generated.h"

namespace quantlens::cuda {
namespace {

using namespace fq;

constexpr int kThreads = 256;

// ---- IQ4_XS ----

// kvalues_iq4nl as floats, and the doubled midpoints of neighbouring levels that
// best_index_int8 compares 2x against (exact small integers).
struct Iq4Table {
    float value[16];
    float mid[16];  // mid[j] = value[j-1] + value[j] for j in [1, 16); mid[0] unused
};

// iq_common.h's best_index_int8 over the 16 IQ4 levels. Its binary search returns the largest
// j with 2x >= mid[j] (0 if none); the midpoints increase, so that is the count of midpoints
// at or below 2x (NaN: 0 in both).
__device__ __forceinline__ int iq4_index(const float* mid, float x) {
    const float x2 = x + x;
    int idx = 0;
#pragma unroll
    for (int j = 1; j < 16; ++j) idx += x2 >= mid[j] ? 1 : 0;
    return idx;
}

// quantize_iq4_super with n = 256 (weights x², or qw·sqrt(σ² + x²) with importance), then
// dequantize_row_iq4_xs.
template <typename T>
__global__ void iq4_xs_k(const T* src, T* dst, int64_t n_sub, Iq4Table table, Importance imp) {
    __shared__ float s_value[16];  // dynamically indexed: shared, not the parameter bank
    if (threadIdx.x < 16) s_value[threadIdx.x] = table.value[threadIdx.x];
    __syncthreads();
    const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const bool valid = g < n_sub;  // invalid lanes still join the shuffles
    float x[32], weight[32];
    load<T, 32>(src, g, valid, x);
    if (imp.values) {
        load_importance<32>(imp, g, valid, weight);
        float sigma2 = group_serial_sum_x2<8, 32>(x);
        sigma2 *= 2.f / 256;
#pragma unroll
        for (int j = 0; j < 32; ++j) weight[j] = weight[j] * sqrtf(sigma2 + x[j] * x[j]);
    } else {
#pragma unroll
        for (int j = 0; j < 32; ++j) weight[j] = x[j] * x[j];
    }
    const float v0 = table.value[0];
    float mid[16];  // registers
#pragma unroll
    for (int j = 0; j < 16; ++j) mid[j] = table.mid[j];

    // The sub-block scale: 15 candidate ratios around the one mapping the extreme to v0.
    float amax = 0, max = 0;
#pragma unroll
    for (int j = 0; j < 32; ++j) {
        const float ax = fabsf(x[j]);
        if (ax > amax) {
            amax = ax;
            max = x[j];
        }
    }
    float scale = 0;
    if (amax >= kGroupMaxEps) {
        float d = -max / v0;
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
#pragma unroll
        for (int j = 0; j < 32; ++j) {
            const float q = s_value[iq4_index(mid, id * x[j])];
            const float w = weight[j];
            sumqx += w * q * x[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int itry = -7; itry <= 7; ++itry) {
            id = static_cast<float>(itry + static_cast<int>(v0)) / max;
            sumqx = sumq2 = 0;
#pragma unroll
            for (int j = 0; j < 32; ++j) {
                const float q = s_value[iq4_index(mid, id * x[j])];
                const float w = weight[j];
                sumqx += w * q * x[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scale = d;
    }

    // 6-bit signed sub-scales against d = -max_scale/32; levels re-picked at the quantized one.
    const float max_scale = group_max_abs<8>(scale);
    if (!valid) return;
    const float d = -max_scale / 32;
    const float id = d != 0 ? 1 / d : 0.f;
    const int l = clamp_int(nearest_int(id * scale), -32, 31);
    const float dl = d * l;
    const float idl = dl != 0 ? 1 / dl : 0.f;
    const float dl_stored = round_f16(d) * l;  // dequantize: fp16 d times (ls - 32)
    T* o = dst + g * 32;
#pragma unroll
    for (int j = 0; j < 32; ++j)
        o[j] = from_f32<T>(dl_stored * s_value[iq4_index(mid, idl * x[j])]);
}

// ---- IQ3_S ----

constexpr int kIq3Levels = 8;  // lattice levels per coordinate
constexpr int kIq3Groups = 8;  // groups of 4 weights per sub-block

// snap_to_grid<4> (iq_grids.h) of one group of 4 weights: levels l = round((id*x - 1)/2) in [0, 8);
// an off-grid vector takes the listed neighbour of least waux-weighted error at `scale`. Returns
// the grid index; *on_grid says whether rounding hit the grid.
__device__ __forceinline__ int iq3_snap(const int32_t* map, const uint32_t* points,
                                        const uint16_t* neighbours, const float* xval,
                                        const float* waux, float id, float scale, bool* on_grid) {
    int packed = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int l = clamp_int(nearest_int(0.5f * (id * xval[i] - 1)), 0, kIq3Levels - 1);
        packed |= l << (3 * i);
    }
    int index = map[packed];
    *on_grid = index >= 0;
    if (index < 0) {
        const uint16_t* nb = neighbours + (-index - 1);
        const int count = __ldg(nb);
        float best_d2 = FLT_MAX;
        for (int j = 1; j <= count; ++j) {
            const int cand = __ldg(nb + j);
            const uint32_t p = points[cand];
            float d2 = 0;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const float q = static_cast<float>((p >> (8 * i)) & 0xff);
                const float diff = scale * q - xval[i];
                d2 += waux[i] * diff * diff;
            }
            if (d2 < best_d2) {
                best_d2 = d2;
                index = cand;
            }
        }
    }
    return index;
}

// iq3.cpp's sums() over the group with grid point p, accumulated in the CPU's index order.
__device__ __forceinline__ void iq3_sums(uint32_t p, const float* xval, const float* weight,
                                         float* sumqx, float* sumq2) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float w = weight[i];
        const float q = static_cast<float>((p >> (8 * i)) & 0xff);  // 2*L + 1
        *sumqx += w * xval[i] * q;
        *sumq2 += w * q * q;
    }
}

// quantize_iq3_s_block (weights x², or qw·sqrt(σ² + x²) with importance), then
// dequantize_row_iq3_s.
template <typename T>
__global__ void iq3_s_k(const T* src, T* dst, int64_t n_sub, Iq3sDeviceTables tab, Importance imp) {
    __shared__ int32_t s_map[4096];  // 16 KiB, indexed by every lane differently
    __shared__ uint32_t s_points[512];
    for (int i = threadIdx.x; i < 4096; i += blockDim.x) s_map[i] = tab.map[i];
    for (int i = threadIdx.x; i < 512; i += blockDim.x) s_points[i] = tab.points[i];
    __syncthreads();
    const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const bool valid = g < n_sub;
    // |x| (as the CPU's sign test writes it), the weights and their square roots.
    float xval[32], weight[32], waux[32];
    uint32_t signs = 0;  // bit i: x[i] < 0 (byte k: the 8 signs of weights 8k..8k+7)
    {
        float x[32];
        load<T, 32>(src, g, valid, x);
        if (imp.values) {
            load_importance<32>(imp, g, valid, weight);
            const float sigma2 = 2 * group_serial_sum_x2<8, 32>(x) / 256;
#pragma unroll
            for (int i = 0; i < 32; ++i) weight[i] = weight[i] * sqrtf(sigma2 + x[i] * x[i]);
        } else {
#pragma unroll
            for (int i = 0; i < 32; ++i) weight[i] = x[i] * x[i];
        }
#pragma unroll
        for (int i = 0; i < 32; ++i) {
            if (x[i] >= 0) {
                xval[i] = x[i];
            } else {
                xval[i] = -x[i];
                signs |= 1u << i;
            }
            waux[i] = sqrtf(weight[i]);
        }
    }
    float max = xval[0];
#pragma unroll
    for (int i = 1; i < 32; ++i) max = max < xval[i] ? xval[i] : max;  // std::max
    const bool stored = max != 0;

    // search_sub_block(xxs = false): 19 candidate ratios, then one re-snap of every group at
    // the best scale when any group was off the grid.
    float scale = 0;
    int index[kIq3Groups];
#pragma unroll
    for (int k = 0; k < kIq3Groups; ++k) index[k] = s_map[0];  // levels all 0 (on the grid)
    if (stored) {
        float best = 0;
        scale = max / (2 * kIq3Levels - 1);
        uint32_t on_grid = 0;  // bit k: group k of the kept candidate was on the grid
        for (int is = -9; is <= 9; ++is) {
            const float id = (2 * kIq3Levels - 1 + is * 0.2f) / max;
            const float this_scale = 1 / id;
            int index_aux[kIq3Groups];
            uint32_t on_grid_aux = 0;
            float sumqx = 0, sumq2 = 0;
#pragma unroll
            for (int k = 0; k < kIq3Groups; ++k) {
                bool on;
                index_aux[k] = iq3_snap(s_map, s_points, tab.neighbours, xval + 4 * k, waux + 4 * k,
                                        id, this_scale, &on);
                on_grid_aux |= on ? 1u << k : 0u;
                iq3_sums(s_points[index_aux[k]], xval + 4 * k, weight + 4 * k, &sumqx, &sumq2);
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                scale = sumqx / sumq2;
                best = scale * sumqx;
#pragma unroll
                for (int k = 0; k < kIq3Groups; ++k) index[k] = index_aux[k];
                on_grid = on_grid_aux;
            }
        }
        if (on_grid != (1u << kIq3Groups) - 1 && scale > 0) {
            const float id = 1 / scale;
            float sumqx = 0, sumq2 = 0;
#pragma unroll
            for (int k = 0; k < kIq3Groups; ++k) {
                bool unused;
                index[k] = iq3_snap(s_map, s_points, tab.neighbours, xval + 4 * k, waux + 4 * k, id,
                                    scale, &unused);
                iq3_sums(s_points[index[k]], xval + 4 * k, weight + 4 * k, &sumqx, &sumq2);
            }
            if (sumq2 > 0) scale = sumqx / sumq2;
        }
        if (scale < 0) {  // cannot happen with |x| inputs; the CPU guards it the same way
            scale = -scale;
            signs = ~signs;
        }
    } else {
        signs = 0;
    }

    // The super-scale, and the 4-bit sub-scale of this lane.
    const float max_scale = group_max<8>(stored ? scale : 0.0f);
    // The CPU's qs/signs cursor advances only past stored sub-blocks, so position ib reads the
    // grid low bytes and signs of the ib-th stored sub-block (zeros past the last one) while
    // the grid high bits (qh) and the scale stay its own.
    const int lane = threadIdx.x % 32;
    const int base = lane & ~7;
    const int ib = lane & 7;
    const uint32_t stored_bits = (__ballot_sync(0xffffffffu, stored) >> base) & 0xffu;
    int source = -1;
    for (int b = 0, seen = 0; b < 8; ++b) {
        if (!(stored_bits >> b & 1)) continue;
        if (seen++ == ib) {
            source = b;
            break;
        }
    }
    uint32_t low_lo = 0, low_hi = 0;  // grid index low bytes of groups 0-3 and 4-7
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        low_lo |= static_cast<uint32_t>(index[k] & 255) << (8 * k);
        low_hi |= static_cast<uint32_t>(index[k + 4] & 255) << (8 * k);
    }
    const int from = base + (source >= 0 ? source : ib);
    low_lo = __shfl_sync(0xffffffffu, low_lo, from);
    low_hi = __shfl_sync(0xffffffffu, low_hi, from);
    uint32_t read_signs = __shfl_sync(0xffffffffu, signs, from);
    if (source < 0) low_lo = low_hi = read_signs = 0;
    if (!valid) return;

    T* o = dst + g * 32;
    if (max_scale == 0) {  // the CPU leaves the block zeroed (d = 0)
#pragma unroll
        for (int i = 0; i < 32; ++i) o[i] = from_f32<T>(0.0f);
        return;
    }
    const float d = max_scale / 31;
    const float d_stored = round_f16(d * 1.033f);
    const float id = 1 / d;
    const int ls = clamp_int(nearest_int(0.5f * (id * (stored ? scale : 0.0f) - 1)), 0, 15);
    const float db = d_stored * (1 + 2 * ls);
#pragma unroll
    for (int k = 0; k < kIq3Groups; ++k) {
        const uint32_t low = ((k < 4 ? low_lo : low_hi) >> (8 * (k % 4))) & 255;
        const uint32_t high = stored ? static_cast<uint32_t>(index[k] >> 8) : 0u;
        const uint32_t p = s_points[low | (high << 8)];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int i = 4 * k + j;
            const float sign = (read_signs >> i & 1) ? -1.f : 1.f;
            o[i] = from_f32<T>(db * static_cast<float>((p >> (8 * j)) & 0xff) * sign);
        }
    }
}

Iq4Table iq4_table() {
    Iq4Table t{};
    const int8_t* v = tables::kvalues_iq4nl;
    for (int j = 0; j < 16; ++j) t.value[j] = static_cast<float>(v[j]);
    for (int j = 1; j < 16; ++j) t.mid[j] = static_cast<float>(v[j - 1] + v[j]);
    return t;
}

}  // namespace

template <typename T>
void launch_fake_quant_iq4_xs(const T* src, T* dst, int64_t n, const FakeQuantImportance& imp) {
    iq4_xs_k<T>
        <<<grid_for(n / 32, kThreads, INT32_MAX), kThreads>>>(src, dst, n / 32, iq4_table(), imp);
    QL_CUDA_LAUNCH();
}

template <typename T>
void launch_fake_quant_iq3_s(const T* src, T* dst, int64_t n, const FakeQuantImportance& imp) {
    iq3_s_k<T><<<grid_for(n / 32, kThreads, INT32_MAX), kThreads>>>(src, dst, n / 32,
                                                                    iq3s_device_tables(), imp);
    QL_CUDA_LAUNCH();
}

template void launch_fake_quant_iq4_xs(const __half*, __half*, int64_t, const FakeQuantImportance&);
template void launch_fake_quant_iq4_xs(const float*, float*, int64_t, const FakeQuantImportance&);
template void launch_fake_quant_iq4_xs(const __nv_bfloat16*, __nv_bfloat16*, int64_t,
                                       const FakeQuantImportance&);
template void launch_fake_quant_iq3_s(const __half*, __half*, int64_t, const FakeQuantImportance&);
template void launch_fake_quant_iq3_s(const float*, float*, int64_t, const FakeQuantImportance&);
template void launch_fake_quant_iq3_s(const __nv_bfloat16*, __nv_bfloat16*, int64_t,
                                      const FakeQuantImportance&);

}  // namespace quantlens::cuda
