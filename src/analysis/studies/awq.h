// AWQ diagnostics (activation-aware weight quantization, Lin et al. 2023) on calibration
// activations: which input channels matter, whether per-channel scaling before group-wise
// round-to-nearest quantization helps a tensor, SmoothQuant scales, and group-size and
// clipping studies.
//
// W is R × C (rows = outputs, C = input channels), X the sampled calibration inputs
// (n × C), a_j = E|x_j| (mean |x| per channel over all calibration tokens), m_j = max |x_j|.
//   importance_j   = a_j · Σ_i |W_ij|; top1_share = share of Σ importance held by the top
//                    ⌈1 %⌉ of channels
//   RTN_b,g,r(W)   = asymmetric b-bit round-to-nearest per group of g consecutive columns of
//                    a row: grid from r·min to r·max of the group (r = clip ratio),
//                    step = (hi − lo)/(2^b − 1), zero point round(−lo/step), q clamped
//                    to [0, 2^b − 1]
//   scale search   = s_j = max(a_j, 1e-4)^α, normalized by √(max s · min s); Ŵ =
//                    RTN(W·diag(s))·diag(1/s) (the inverse folded into x); α ∈ alphas
//   output error   = ‖X Wᵀ − X Ŵᵀ‖_F / ‖X Wᵀ‖_F on the sampled rows; α = 0 is plain RTN;
//                    reduction = 1 − err(best α) / err(α = 0)
//   SmoothQuant    = s_j = m_j^α / max_i |W_ij|^(1−α); reported: the min/median/max of s and
//                    the activation and weight "max/mean channel max" ratios before and
//                    after (x/s, W·diag(s))
//   group study    = RTN_b at study_bits for each group size: weight RMSE, output error,
//                    effective bits b + 32/g (an F16 scale and an F16 minimum per group)
//   clip sweep     = RTN_b at study_bits, group g, for each clip ratio r: weight RMSE and
//                    output error
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace quantlens {

struct AwqOptions {
    std::vector<int> bits = {2, 3, 4};
    int64_t group = 128;
    std::vector<double> alphas = {0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0};
    double smooth_alpha = 0.5;
    int study_bits = 4;
    std::vector<int64_t> group_sizes = {32, 64, 128, 256};
    std::vector<double> clip_ratios = {0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0};
};

struct AwqSearch {
    int bits = 0;
    std::vector<double> err_by_alpha;  // same order as AwqOptions::alphas
    double err_plain = 0, err_best = 0, best_alpha = 0;
    double reduction() const { return err_plain > 0 ? 1 - err_best / err_plain : 0; }
};

struct AwqTensor {
    std::string name, family;  // family: q k v o gate up down (router, output: as named)
    int64_t rows = 0, cols = 0, n_samples = 0;
    std::vector<float> importance;
    double top1_share = 0;
    std::vector<AwqSearch> search;
    double sq_scale_min = 0, sq_scale_median = 0, sq_scale_max = 0;
    double sq_act_ratio_before = 0, sq_act_ratio_after = 0;
    double sq_w_ratio_before = 0, sq_w_ratio_after = 0;
    struct GroupRow {
        int64_t group = 0;
        double rmse = 0, out_err = 0, eff_bits = 0;
    };
    std::vector<GroupRow> group_study;
    struct ClipRow {
        double ratio = 0, rmse = 0, out_err = 0;
    };
    std::vector<ClipRow> clip_sweep;
};

// The module family of a GGUF weight name: "blk.3.attn_output.weight" → "o".
std::string module_family(const std::string& gguf_name);

// Group-wise RTN as defined above (dst may equal src). Columns past the last whole group form
// a shorter final group.
void rtn_quantize(const float* src, float* dst, int64_t rows, int64_t cols, int bits, int64_t group,
                  double clip = 1.0);

// The scale search's s_j for one α: max(magnitude_j, 1e-4)^α over √(max s · min s).
std::vector<double> awq_scales(const float* magnitude, int64_t cols, double alpha);

// w: rows × cols; x: n × cols sampled inputs; mean_abs, max_abs: cols per-channel statistics.
AwqTensor awq_diagnose(const std::string& name, const float* w, int64_t rows, int64_t cols,
                       const float* x, int64_t n, const float* mean_abs, const float* max_abs,
                       const AwqOptions& options);

// Per family and bit width: mean reduction, mean error without/with scaling, mean best α,
// mean top-1 % share.
struct AwqFamilySummary {
    std::string family;
    int64_t n_tensors = 0;
    double top1_share = 0;
    std::map<int, double> err_plain, err_best, reduction, best_alpha;  // by bits
};
std::vector<AwqFamilySummary> summarize_families(const std::vector<AwqTensor>& tensors);

nlohmann::json to_json(const AwqTensor& t);
nlohmann::json to_json(const AwqFamilySummary& s);

}  // namespace quantlens
