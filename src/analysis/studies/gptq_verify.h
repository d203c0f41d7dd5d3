// `verify --format gptq`: GPTQ recipes (formats/recipe.h, `plan --format gptq`) measured by
// fake quantization: every module takes the values its GPTQ checkpoint decodes to
// (analysis/write/gptq_formats.h: GPTQModel's packing, f16 scales, v1 zeros), with GPTQ error
// feedback against Hessians of the calibration text when one is given (plain rounding
// otherwise), and the model is evaluated against its full-precision self on the same tokens
// (llama-perplexity chunking, f32 compute, F16-rounded base weights as the sweep uses).
// Beside each recipe: uniform gptq4g128 (the most downloaded GPTQ setting) and uniform
// gptq8g128, rounded the same way (act order as the first recipe's desc_act).
// No checkpoint is written.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace quantlens {

struct GptqVerifyOptions {
    std::string base_model;
    std::string text;
    std::string out_dir = "quantlens-verify";  // base.qllogp goes here
    int64_t ctx = 512;
    int64_t chunks = 100;
    std::string gptq_text;  // calibration text for GPTQ error feedback ("" = plain rounding)
    int64_t gptq_chunks = 64;
    bool baselines = true;  // add uniform gptq4g128 and gptq8g128
    // Held-out check of each recipe against its sweep's text (analysis/studies/holdout.h).
    std::string store;  // "" = the default store
    bool allow_overlap = false;
};

struct GptqVerifyRow {
    std::string name;
    uint64_t size_bytes = 0;  // checkpoint tensor bytes (gptq_plan.h)
    double bpw = 0;
    double ppl = 0, kld_mean = 0, kld_err = 0, kld_p99 = 0, kld_p999 = 0, kld_max = 0, top1 = 0;
    double predicted_kld = 0;  // NaN when not a plan
};

struct GptqVerifyReport {
    double base_ppl = 0;
    int64_t n_tokens = 0;
    std::vector<GptqVerifyRow> rows;
};

// recipes: paths of GPTQ recipes. Throws Error naming a recipe that is not a GPTQ recipe or
// names a tensor the model lacks or GPTQ cannot store.
GptqVerifyReport run_gptq_verify(const GptqVerifyOptions& options,
                                 const std::vector<std::string>& recipes);
std::string gptq_verify_table(const GptqVerifyReport& report);
nlohmann::json gptq_verify_json(const GptqVerifyReport& report);

}  // namespace quantlens
