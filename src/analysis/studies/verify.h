// Verification by measurement: quantize recipes and llama.cpp's uniform presets with our
// bit-exact quantizers, evaluate every file against the full-precision base on the same
// tokens (llama-perplexity chunking), and tabulate size, bpw, PPL and KL divergence beside
// the recipe's predicted KLD.
//
// The base runs once; its log-probabilities go to OUT_DIR/base.qllogp and every candidate
// is compared against that file. With ggml_numerics (the default) both sides emulate
// llama.cpp's CPU arithmetic so the figures compare with docs/REFERENCE-FIGURES.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "analysis/measure/eval.h"
#include "analysis/studies/holdout.h"
#include "analysis/studies/llama_cpp_check.h"

namespace quantlens {

struct VerifyCandidate {
    std::string name;    // shown in the table ("plan", "Q4_K_M", file stem)
    std::string gguf;    // an existing GGUF, or
    std::string recipe;  // a recipe to quantize into out_dir, or
    std::string preset;  // a llama.cpp preset to quantize into out_dir
};

struct VerifyOptions {
    std::string base_model;
    std::string text;
    std::string out_dir = "quantlens-verify";
    std::string imatrix;  // used when quantizing recipes and presets
    int64_t ctx = 512;
    int64_t chunks = 100;
    bool ggml_numerics = true;
    // Evaluate the base and the candidates on the GPU (F16 weights; refused together with
    // ggml_numerics, see make_logits_model in analysis/measure/eval.h).
    bool gpu = false;
    // Keep a candidate file already written from the same recipe, base, imatrix and GPTQ
    // settings (a key file beside it says which); any change rewrites it.
    bool reuse_files = true;
    // Recipes (not presets, which stay llama.cpp's) are written with GPTQ rounding against
    // Hessians of this calibration text (analysis/write/gptq_rounding.h).
    std::string gptq_text;
    int64_t gptq_chunks = 64;
    // Held out by default (analysis/studies/holdout.h): a recipe whose sweep evaluated text
    // that `text` shares is refused unless allow_overlap. store: the job store holding the
    // recipes' sweep jobs ("" = the default store).
    std::string store;
    bool allow_overlap = false;
    // verify --llama-cpp [DIR]: also run llama.cpp's llama-perplexity on every candidate
    // (analysis/studies/llama_cpp_check.h); "" looks on PATH. Refused by name when absent.
    std::optional<std::string> llama_cpp_dir;
};

struct VerifyRow {
    std::string name, path;
    uint64_t size_bytes = 0;
    double bpw = 0;
    double ppl = 0, ppl_err = 0;
    double kld_mean = 0, kld_err = 0, kld_median = 0, kld_p99 = 0, kld_p999 = 0, kld_max = 0;
    double top1 = 0, rms_dp = 0;
    std::optional<double> predicted_kld;
    // The recipe's predicted tails (plan_job.h), when its sweep recorded tails.
    std::optional<double> predicted_kld_p99, predicted_kld_p999;
    std::optional<LlamaCppFigures> llama_cpp;  // verify --llama-cpp: the tool's own figures
    double seconds = 0;
};

// A candidate's figures from its evaluation against the base (`r.kld` set), into a verify
// row (VerifyRow, GptqVerifyRow): PPL, KLD mean, error, tails and maximum, top-1 agreement,
// and the KLD median and RMS Δp where the row has them.
template <typename Row>
void set_eval_figures(Row& row, const EvalResult& r) {
    const KldStats& k = r.kld.value();
    row.ppl = r.ppl.ppl;
    row.kld_mean = k.kld_mean;
    row.kld_err = k.kld_err;
    row.kld_p99 = k.kld_p99;
    row.kld_p999 = k.kld_p999;
    row.kld_max = k.kld_max;
    row.top1 = k.same_top;
    if constexpr (requires { row.kld_median; }) row.kld_median = k.kld_median;
    if constexpr (requires { row.rms_dp; }) row.rms_dp = k.rms_dp;
}

struct VerifyReport {
    double base_ppl = 0;
    int64_t n_tokens = 0;
    std::vector<VerifyRow> rows;
    HeldOut held_out;  // which text verified, which text tuned each recipe
    std::string llama_cpp_tool, llama_cpp_base;  // verify --llama-cpp: the tool and its base
};

VerifyReport run_verify(const VerifyOptions& options,
                        const std::vector<VerifyCandidate>& candidates);
std::string verify_table(const VerifyReport& report);
nlohmann::json verify_json(const VerifyReport& report);
// The verify table a sweep job keeps (`verify --job`, artifact "verify") after a new run:
// `now`, plus the rows of `earlier` that `now` did not measure again (and their held-out
// entries) when both measured the same text with the same windows and context, so every
// recipe verified on that text stays listed; otherwise `now` alone (figures measured on
// different text are not comparable). `earlier` may be null or any JSON (then ignored).
nlohmann::json merge_verify_tables(const nlohmann::json& earlier, const nlohmann::json& now);

}  // namespace quantlens
