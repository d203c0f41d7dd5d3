// Perplexity/KLD statistics and the base log-prob file: see kld.h for the definitions.
#include "analysis/measure/kld.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "core/error.h"

namespace quantlens {

namespace {

constexpr char kMagic[8] = {'Q', 'L', 'L', 'O', 'G', 'P', '\0', '\1'};
constexpr size_t kHeaderBytes = 8 + 4 * 4;
constexpr uint16_t kNoMass = 65535;

// (mean, standard error of the mean), as llama.cpp: σ/√(n−1), zero for n ≤ 10.
std::pair<double, double> mean_and_error(double sum, double sum2, int64_t n) {
    if (n < 1) return {0.0, 0.0};
    const double mean = sum / n;
    const double var = sum2 / n - mean * mean;
    return {mean, var > 0 && n > 10 ? std::sqrt(var / (n - 1)) : 0.0};
}

// log Σ exp(z − max z), summed in double; the max and its first index go to the outputs.
double log_sum_exp_shifted(const float* z, int64_t V, float* max_out, int64_t* argmax_out) {
    float mx = z[0];
    int64_t arg = 0;
    for (int64_t i = 1; i < V; ++i)
        if (z[i] > mx) mx = z[i], arg = i;
    double sum = 0.0;
    for (int64_t i = 0; i < V; ++i) sum += std::exp(static_cast<double>(z[i] - mx));
    *max_out = mx;
    *argmax_out = arg;
    return std::log(sum);
}

double log_sum_exp(const float* z, int64_t V, float* max_out, int64_t* argmax_out) {
    const double shifted = log_sum_exp_shifted(z, V, max_out, argmax_out);
    return *max_out + shifted;
}

}  // namespace

double sorted_quantile(std::span<const float> sorted, double fraction) {
    if (sorted.empty()) return 0.0;
    if (fraction <= 0) return sorted.front();
    if (fraction >= 1) return sorted.back();
    const double p = fraction * static_cast<double>(sorted.size() - 1);
    const auto i = static_cast<size_t>(p);
    const double f = p - static_cast<double>(i);
    return (1 - f) * sorted[i] + f * sorted[std::min(i + 1, sorted.size() - 1)];
}

KldTails kld_tails(std::vector<float> values) {
    std::sort(values.begin(), values.end());
    return {sorted_quantile(values, 0.99), sorted_quantile(values, 0.999)};
}

int64_t log_softmax_row(const float* logits, int64_t V, float* logp) {
    float mx;
    int64_t arg;
    // The normalizer is summed in double, then rounded once to float so that every logp is
    // one float subtraction (the sweep stores these rows and compares them bit for bit).
    const float log_sum = static_cast<float>(log_sum_exp_shifted(logits, V, &mx, &arg));
    const float lse = mx + log_sum;
    for (int64_t i = 0; i < V; ++i) logp[i] = logits[i] - lse;
    return arg;
}

double token_nll(const float* logits, int64_t V, int32_t target) {
    float mx;
    int64_t arg;
    return log_sum_exp(logits, V, &mx, &arg) - logits[target];
}

ScoredToken score_token(const float* logits, const float* base_logp, int64_t base_top, int64_t V,
                        int32_t target) {
    float mx;
    int64_t top;
    const double lse = log_sum_exp(logits, V, &mx, &top);
    ScoredToken t;
    const double nll = lse - logits[target];
    t.nll = static_cast<float>(nll);
    t.nll_base = -base_logp[target];
    double kld = 0.0;
    for (int64_t i = 0; i < V; ++i) {
        const double b = base_logp[i];
        if (!std::isfinite(b)) continue;
        kld += std::exp(b) * (b - (logits[i] - lse));
    }
    t.kld = static_cast<float>(kld);
    t.p_diff =
        static_cast<float>(std::exp(-nll) - std::exp(static_cast<double>(base_logp[target])));
    t.same_top = top == base_top;
    return t;
}

void EvalAccumulator::add_nll(double nll) {
    ++count_;
    sum_nll_ += nll;
    sum_nll2_ += nll * nll;
}

void EvalAccumulator::add(const ScoredToken& t) {
    add_nll(t.nll);
    sum_nll_base_ += t.nll_base;
    sum_nll_base2_ += static_cast<double>(t.nll_base) * t.nll_base;
    sum_nll_nll_base_ += static_cast<double>(t.nll) * t.nll_base;
    sum_kld_ += t.kld;
    sum_kld2_ += static_cast<double>(t.kld) * t.kld;
    const double dp2 = static_cast<double>(t.p_diff) * t.p_diff;
    sum_dp2_ += dp2;
    sum_dp4_ += dp2 * dp2;
    n_same_top_ += t.same_top;
    kld_values_.push_back(t.kld);
}

PplStats EvalAccumulator::ppl() const {
    PplStats s;
    s.count = count_;
    const auto [mean, err] = mean_and_error(sum_nll_, sum_nll2_, count_);
    s.mean_nll = mean;
    s.ppl = std::exp(mean);
    s.ppl_err = s.ppl * err;
    return s;
}

KldStats EvalAccumulator::kld() const {
    QL_ASSERT(static_cast<int64_t>(kld_values_.size()) == count_);
    KldStats s;
    const int64_t n = s.count = count_;
    if (n == 0) return s;
    const auto [lq, lq_err] = mean_and_error(sum_nll_, sum_nll2_, n);
    const auto [lb, lb_err] = mean_and_error(sum_nll_base_, sum_nll_base2_, n);
    s.ppl = std::exp(lq);
    s.ppl_err = s.ppl * lq_err;
    s.ppl_base = std::exp(lb);
    s.ppl_base_err = s.ppl_base * lb_err;
    const double cov =
        n < 10 ? 0.0 : (sum_nll_nll_base_ / n - (sum_nll_ / n) * (sum_nll_base_ / n)) / (n - 1);
    s.ln_ppl_ratio = lq - lb;
    s.ln_ppl_ratio_err = std::sqrt(std::max(0.0, lq_err * lq_err + lb_err * lb_err - 2.0 * cov));
    const auto [kmean, kerr] = mean_and_error(sum_kld_, sum_kld2_, n);
    s.kld_mean = kmean;
    s.kld_err = kerr;
    std::vector<float> sorted = kld_values_;
    std::sort(sorted.begin(), sorted.end());
    s.kld_median = sorted_quantile(sorted, 0.5);
    s.kld_p90 = sorted_quantile(sorted, 0.90);
    s.kld_p99 = sorted_quantile(sorted, 0.99);
    s.kld_p999 = sorted_quantile(sorted, 0.999);
    s.kld_max = sorted.back();
    s.same_top = static_cast<double>(n_same_top_) / n;
    s.same_top_err = n > 1 ? std::sqrt(s.same_top * (1 - s.same_top) / (n - 1)) : 0.0;
    const auto [mse, mse_err] = mean_and_error(sum_dp2_, sum_dp4_, n);
    s.rms_dp = std::sqrt(mse);
    s.rms_dp_err = s.rms_dp > 0 ? 0.5 / s.rms_dp * mse_err : 0.0;
    return s;
}

// ---- base log-prob file ----------------------------------------------------------------

LogitsWriter::LogitsWriter(const std::string& path, const LogitsHeader& header,
                           std::span<const int32_t> tokens, Overwrite overwrite)
    : header_(header), out_(path, overwrite), codes_(header.n_vocab) {
    QL_ASSERT(tokens.size() == static_cast<size_t>(header.n_ctx) * header.n_chunks);
    out_.write(kMagic, 8);
    const uint32_t fields[4] = {header.n_ctx, header.n_vocab, header.n_chunks, header.first};
    out_.write(reinterpret_cast<const char*>(fields), sizeof fields);
    out_.write(tokens.data(), tokens.size_bytes());
}

void LogitsWriter::add_row(const float* logp) {
    const uint32_t V = header_.n_vocab;
    const float mx = *std::max_element(logp, logp + V);
    for (uint32_t i = 0; i < V; ++i) {
        const double code = std::nearbyint((static_cast<double>(mx) - logp[i]) / kLogpStep);
        codes_[i] = code >= kNoMass ? kNoMass : static_cast<uint16_t>(code);
    }
    out_.write(&mx, sizeof mx);
    out_.write(codes_.data(), V * sizeof(uint16_t));
    ++rows_;
}

void LogitsWriter::close() {
    const uint64_t expected = static_cast<uint64_t>(header_.n_chunks) * header_.rows_per_chunk();
    QL_ASSERT(rows_ == expected);
    out_.commit();
}

LogitsFile::LogitsFile(const std::string& path) : file_(path) {
    const uint8_t* p = file_.data();
    QL_CHECK(
        file_.size() >= kHeaderBytes && std::memcmp(p, kMagic, 8) == 0,
        "{}: not a quantlens log-prob file (expected magic QLLOGP v1, from eval --save-logits)",
        path);
    uint32_t f[4];
    std::memcpy(f, p + 8, sizeof f);
    header_ = {f[0], f[1], f[2], f[3]};
    QL_CHECK(header_.n_ctx >= 4 && header_.first < header_.n_ctx - 1 && header_.n_vocab > 0 &&
                 header_.n_chunks > 0,
             "{}: invalid header (n_ctx {}, first {}, n_vocab {}, n_chunks {})", path,
             header_.n_ctx, header_.first, header_.n_vocab, header_.n_chunks);
    const uint64_t n_tokens = static_cast<uint64_t>(header_.n_ctx) * header_.n_chunks;
    const uint64_t row_bytes = 4 + 2ull * header_.n_vocab;
    const uint64_t expected =
        kHeaderBytes + 4 * n_tokens + row_bytes * header_.n_chunks * header_.rows_per_chunk();
    QL_CHECK(file_.size() == expected,
             "{}: size {} bytes, expected {} for {} chunks of {} tokens, vocab {}", path,
             file_.size(), expected, header_.n_chunks, header_.n_ctx, header_.n_vocab);
    tokens_ = {reinterpret_cast<const int32_t*>(p + kHeaderBytes), n_tokens};
    rows_ = p + kHeaderBytes + 4 * n_tokens;
}

int64_t LogitsFile::row(uint64_t row, float* logp) const {
    const uint32_t V = header_.n_vocab;
    const uint8_t* r = rows_ + row * (4 + 2ull * V);
    float mx;
    std::memcpy(&mx, r, 4);
    int64_t top = -1;
    uint16_t best = kNoMass;
    for (uint32_t i = 0; i < V; ++i) {
        uint16_t c;
        std::memcpy(&c, r + 4 + 2ull * i, 2);
        logp[i] = c == kNoMass ? -std::numeric_limits<float>::infinity()
                               : static_cast<float>(mx - c * kLogpStep);
        if (top < 0 || c < best) top = i, best = c;
    }
    return top;
}

}  // namespace quantlens
