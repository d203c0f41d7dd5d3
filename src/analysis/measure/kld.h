// Per-token perplexity and KL-divergence statistics with llama.cpp's definitions
// (llama-perplexity --kl-divergence), and the file that stores a base model's
// log-probabilities so it need not be re-run.
//
// For each scored position with target token y, evaluated logits z and base log-probs b:
//   nll       = logsumexp(z) − z_y                      (natural log)
//   nll_base  = −b_y
//   KLD       = Σ_i exp(b_i) (b_i − log softmax(z)_i)   (KL(base ‖ evaluated))
//   Δp        = softmax(z)_y − exp(b_y)
//   same top  = argmax z == argmax b                    (first index on ties)
// Aggregates: PPL = exp(mean nll) ± PPL·σ(nll)/√(n−1); mean KLD ± σ/√(n−1); median and
// percentiles by linear interpolation at fraction·(n−1) of the sorted values;
// RMS Δp = √mean(Δp²); ln(PPL_q/PPL_base) = mean nll − mean nll_base with the
// covariance-corrected uncertainty; same-top-1 fraction ± √(p(1−p)/(n−1)).
//
// Base log-prob file (".qllogp", little-endian), written by `eval --save-logits`:
//   magic "QLLOGP\0\1" (8 bytes), u32 n_ctx, u32 n_vocab, u32 n_chunks, u32 first,
//   i32 tokens[n_chunks·n_ctx]       the chunk tokens as evaluated (BOS already first),
//   then per chunk, per scored position (first .. n_ctx−2, i.e. n_ctx−1−first rows):
//     f32 max_logp, u16 code[n_vocab]
//   log p_i = max_logp − code_i·kLogpStep; code 65535 means p_i < exp(max_logp − 24),
//   read as "no mass" (such terms are dropped from the KLD sum, as llama.cpp drops
//   probabilities below e^-16). kLogpStep = 24/65534 nats keeps log p within ±1.9e-4.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/mmap_file.h"
#include "core/output_file.h"

namespace quantlens {

struct ScoredToken {
    float nll = 0;
    float nll_base = 0;
    float kld = 0;
    float p_diff = 0;
    bool same_top = false;
};

// Writes log softmax(logits[V]) into logp[V]; returns argmax (first on ties).
int64_t log_softmax_row(const float* logits, int64_t V, float* logp);
// nll of `target` under logits[V] (no base): logsumexp − z_target, in double.
double token_nll(const float* logits, int64_t V, int32_t target);
// All per-token quantities against base log-probs base_logp[V] (argmax base_top).
ScoredToken score_token(const float* logits, const float* base_logp, int64_t base_top, int64_t V,
                        int32_t target);

// The quantile at `fraction` (0..1) of values sorted ascending, by linear interpolation at
// fraction·(n−1) (the definition above); 0 for no values. The one quantile of eval, verify and
// the sweep's per-item tails.
double sorted_quantile(std::span<const float> sorted, double fraction);

// The KLD tails every table shows beside the mean: p99 and p99.9 of per-token KLD.
struct KldTails {
    double p99 = 0, p999 = 0;
};
// Sorts `values` (per-token KLD) and takes the tails; zeros for no values.
KldTails kld_tails(std::vector<float> values);

struct PplStats {
    int64_t count = 0;
    double mean_nll = 0, ppl = 0, ppl_err = 0;
};

struct KldStats {
    int64_t count = 0;
    double ppl = 0, ppl_err = 0, ppl_base = 0, ppl_base_err = 0;
    double ln_ppl_ratio = 0, ln_ppl_ratio_err = 0;
    double kld_mean = 0, kld_err = 0, kld_median = 0, kld_p90 = 0, kld_p99 = 0, kld_p999 = 0,
           kld_max = 0;
    double same_top = 0, same_top_err = 0;  // fractions
    double rms_dp = 0, rms_dp_err = 0;      // fractions
};

class EvalAccumulator {
  public:
    void add_nll(double nll);        // perplexity only
    void add(const ScoredToken& t);  // with a base
    int64_t count() const { return count_; }
    PplStats ppl() const;
    KldStats kld() const;  // requires add() calls only

  private:
    int64_t count_ = 0, n_same_top_ = 0;
    double sum_nll_ = 0, sum_nll2_ = 0, sum_nll_base_ = 0, sum_nll_base2_ = 0,
           sum_nll_nll_base_ = 0;
    double sum_kld_ = 0, sum_kld2_ = 0, sum_dp2_ = 0, sum_dp4_ = 0;
    std::vector<float> kld_values_;
};

constexpr double kLogpRange = 24.0;
constexpr double kLogpStep = kLogpRange / 65534.0;

struct LogitsHeader {
    uint32_t n_ctx = 0, n_vocab = 0, n_chunks = 0, first = 0;
    uint32_t rows_per_chunk() const { return n_ctx - 1 - first; }
};

class LogitsWriter {
  public:
    // Writes the header and tokens; rows follow through add_row in order. The file is an
    // OutputFile (core/output_file.h): nothing reaches PATH before close().
    LogitsWriter(const std::string& path, const LogitsHeader& header,
                 std::span<const int32_t> tokens, Overwrite overwrite = Overwrite::refuse);
    void add_row(const float* logp);  // log-probs[n_vocab]
    void close();                     // checks that every row was written; renames into place

  private:
    LogitsHeader header_;
    OutputFile out_;
    uint64_t rows_ = 0;
    std::vector<uint16_t> codes_;
};

class LogitsFile {
  public:
    explicit LogitsFile(const std::string& path);  // validates; throws Error naming the file
    const LogitsHeader& header() const { return header_; }
    std::span<const int32_t> tokens() const { return tokens_; }
    // Decodes scored row `row` (chunk·rows_per_chunk + position) into logp[n_vocab]
    // (−inf for "no mass"); returns its argmax.
    int64_t row(uint64_t row, float* logp) const;
    const std::string& path() const { return file_.path(); }

  private:
    MappedFile file_;
    LogitsHeader header_;
    std::span<const int32_t> tokens_;
    const uint8_t* rows_ = nullptr;
};

}  // namespace quantlens
