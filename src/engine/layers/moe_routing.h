// DeepSeek-V3's expert choice (transformers' DeepseekV3 router / route_tokens_to_experts,
// which GLM-4.5 shares): per token, scores s = sigmoid(logits); experts are chosen on
// s + bias (e_score_correction_bias, exp_probs_b) — the experts split in n_groups equal
// groups, a group scored by the sum of its two best biased scores, the best groups_used
// groups kept and the others' experts masked to 0 (transformers' value; llama.cpp masks to
// −inf, which differs only when a kept biased score is negative), then the top k; each chosen
// expert is weighted by its unbiased s, renormalized to sum 1 when `renormalize` (+1e-20 as
// transformers), times `scale` (routed_scaling_factor).
//
// route_sigmoid_grouped is the fast path (partial selections), route_sigmoid_grouped_ref the
// specification (full sorts); tests/engine/test_deepseek_layers.cpp compares them. Ties go to
// the lower expert index in both.
#pragma once

#include <cstdint>

namespace quantlens {

struct SigmoidRouting {
    int64_t n_experts = 0;
    int64_t k = 0;  // experts per token
    int64_t n_groups = 1;
    int64_t groups_used = 1;
    bool renormalize = true;
    float scale = 1.0f;
};

// logits[N, E] (router outputs), bias[E] or null → ids[N, k] (in choice order) and
// weights[N, k].
void route_sigmoid_grouped(int32_t* ids, float* weights, const float* logits, const float* bias,
                           int64_t N, const SigmoidRouting& r);
void route_sigmoid_grouped_ref(int32_t* ids, float* weights, const float* logits, const float* bias,
                               int64_t N, const SigmoidRouting& r);

}  // namespace quantlens
