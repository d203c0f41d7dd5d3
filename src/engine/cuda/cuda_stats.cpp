// TapReducer (cuda_stats.h): device accumulators per key, the kernels in cuda_stats.cu, the
// Hessian products through cuBLAS. Host code only.
#include "engine/cuda/cuda_stats.h"

#include <cstring>
#include <map>

#include "core/error.h"
#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/cuda_stats_kernels.h"
#include "formats/model_config.h"

namespace quantlens::cuda {

namespace {

struct Moments {
    int64_t n_cols = 0, n_rows = 0;
    DeviceBuffer acc;       // [kMomentSums][n_cols] doubles, then n_cols floats (max |x|)
    DeviceBuffer n_beyond;  // one 64-bit count
};

struct Hidden {
    int64_t n_cols = 0, n_tokens = 0;
    DeviceBuffer sums;  // double Σ|h|, int64 max_channel, float max |h|, 64-bit scratch
};
// Byte offsets in Hidden::sums.
constexpr size_t kSumAbs = 0, kMaxChannel = 8, kMaxAbs = 16, kBest = 24, kHiddenBytes = 32;

struct Hessian {
    int64_t n_cols = 0, tokens = 0;
    DeviceBuffer acc;  // [n_cols][n_cols] doubles
};

}  // namespace

struct TapReducer::Impl {
    Dtype dt = Dtype::F16;
    cudaDataType_t cdt = CUDA_R_16F;
    bool storage_f32 = false;  // an F32-storage engine: every tap is f32
    cublasHandle_t blas = nullptr;
    std::map<std::string, Moments> moments;
    std::map<int, Hidden> hidden;
    std::map<std::string, Hessian> hessians;
    DeviceBuffer partials, mu_thr, product;

    const void* check_tap(const ActivationTap& t, ActivationTap::Kind kind) const {
        QL_ASSERT(t.kind == kind && t.data != nullptr && t.rows >= 0 && t.cols > 0);
        return t.data;
    }
};

TapReducer::TapReducer(Precision storage) : impl_(std::make_unique<Impl>()) {
    impl_->dt = storage == Precision::BF16 ? Dtype::BF16 : Dtype::F16;
    impl_->cdt = storage == Precision::BF16 ? CUDA_R_16BF : CUDA_R_16F;
    // Written without naming the 32-bit storage precision, so it holds for any precision the
    // engine adds beside the two 16-bit ones.
    impl_->storage_f32 = storage != Precision::BF16 && storage != Precision::F16;
    QL_CUBLAS(cublasCreate(&impl_->blas));
    impl_->mu_thr.resize(2 * sizeof(double));
}

TapReducer::~TapReducer() {
    if (impl_->blas) cublasDestroy(impl_->blas);
}

void TapReducer::add_moments(const std::string& key, const ActivationTap& t) {
    Impl& m = *impl_;
    m.check_tap(t, ActivationTap::Kind::LinearInput);
    auto [it, fresh] = m.moments.try_emplace(key);
    Moments& mo = it->second;
    if (fresh) {
        mo.n_cols = t.cols;
        const size_t bytes = static_cast<size_t>(t.cols) * (kMomentSums * 8 + 4);
        mo.acc.resize(bytes);
        QL_CUDA(cudaMemsetAsync(mo.acc.as(), 0, bytes));
        mo.n_beyond.resize(8);
        QL_CUDA(cudaMemsetAsync(mo.n_beyond.as(), 0, 8));
    }
    QL_CHECK(mo.n_cols == t.cols, "GPU statistics: input '{}' had rows of {} values, now {}", key,
             mo.n_cols, t.cols);
    if (t.rows == 0) return;
    m.partials.resize(static_cast<size_t>(moment_partial_doubles(t.cols)) * 8);
    mo.n_rows += t.rows;
    launch_moments_add(
        t.data, t.f32 || m.storage_f32, m.dt, t.rows, t.cols, m.partials.as<double>(),
        mo.acc.as<double>(), reinterpret_cast<float*>(mo.acc.as<double>() + kMomentSums * t.cols),
        m.mu_thr.as<double>(), static_cast<double>(mo.n_rows) * static_cast<double>(t.cols),
        mo.n_beyond.as<unsigned long long>());
}

void TapReducer::add_hidden(const ActivationTap& t) {
    Impl& m = *impl_;
    m.check_tap(t, ActivationTap::Kind::LayerOutput);
    QL_ASSERT(t.f32);  // the residual stream is f32
    QL_CHECK(t.rows * t.cols < (int64_t{1} << 32),
             "GPU statistics: layer {}: {} x {} hidden values in one batch, at most 2^32", t.layer,
             t.rows, t.cols);
    auto [it, fresh] = m.hidden.try_emplace(t.layer);
    Hidden& h = it->second;
    if (fresh) {
        h.n_cols = t.cols;
        h.sums.resize(kHiddenBytes);
        QL_CUDA(cudaMemsetAsync(h.sums.as(), 0, kHiddenBytes));
        const int64_t none = -1;
        QL_CUDA(cudaMemcpy(h.sums.as<char>() + kMaxChannel, &none, 8, cudaMemcpyHostToDevice));
    }
    QL_CHECK(h.n_cols == t.cols, "GPU statistics: layer {} had outputs of {} values, now {}",
             t.layer, h.n_cols, t.cols);
    m.partials.resize(kHiddenPartials * 8);
    h.n_tokens += t.rows;
    char* s = h.sums.as<char>();
    launch_hidden_add(static_cast<const float*>(t.data), t.rows, t.cols, m.partials.as<double>(),
                      reinterpret_cast<unsigned long long*>(s + kBest),
                      reinterpret_cast<double*>(s + kSumAbs), reinterpret_cast<float*>(s + kMaxAbs),
                      reinterpret_cast<int64_t*>(s + kMaxChannel));
}

void TapReducer::add_hessian(const std::string& key, const ActivationTap& t) {
    Impl& m = *impl_;
    m.check_tap(t, ActivationTap::Kind::LinearInput);
    const int64_t n = t.cols;
    auto [it, fresh] = m.hessians.try_emplace(key);
    Hessian& h = it->second;
    if (fresh) {
        h.n_cols = n;
        h.acc.resize(static_cast<size_t>(hessian_bytes(n)));
        QL_CUDA(cudaMemsetAsync(h.acc.as(), 0, static_cast<size_t>(hessian_bytes(n))));
    }
    QL_CHECK(h.n_cols == n, "GPU Hessians: input '{}' had rows of {} values, now {}", key, h.n_cols,
             n);
    if (t.rows == 0) return;
    m.product.resize(static_cast<size_t>(n * n) * 4);
    // Column-major view: the tap is A = Xᵀ (n × rows, lda n); product = A Aᵀ = XᵀX (n × n).
    const float one = 1.0f, zero = 0.0f;
    const cudaDataType_t in = t.f32 || m.storage_f32 ? CUDA_R_32F : m.cdt;
    QL_CUBLAS(cublasGemmEx(m.blas, CUBLAS_OP_N, CUBLAS_OP_T, static_cast<int>(n),
                           static_cast<int>(n), static_cast<int>(t.rows), &one, t.data, in,
                           static_cast<int>(n), t.data, in, static_cast<int>(n), &zero,
                           m.product.as(), CUDA_R_32F, static_cast<int>(n), CUBLAS_COMPUTE_32F,
                           CUBLAS_GEMM_DEFAULT));
    launch_add_upper(h.acc.as<double>(), m.product.as<float>(), n);
    h.tokens += t.rows;
}

std::vector<std::string> TapReducer::moment_keys() const {
    std::vector<std::string> out;
    for (const auto& [k, v] : impl_->moments) out.push_back(k);
    return out;
}

ChannelSums TapReducer::moments(const std::string& key) const {
    const auto it = impl_->moments.find(key);
    QL_CHECK(it != impl_->moments.end(), "GPU statistics: no input '{}' was reduced", key);
    const Moments& mo = it->second;
    const auto C = static_cast<size_t>(mo.n_cols);
    std::vector<double> all(kMomentSums * C + (C + 1) / 2);  // the floats packed behind
    QL_CUDA(cudaMemcpy(all.data(), mo.acc.as(), C * (kMomentSums * 8 + 4), cudaMemcpyDeviceToHost));
    ChannelSums s;
    s.n_cols = mo.n_cols;
    s.n_rows = mo.n_rows;
    unsigned long long beyond = 0;
    QL_CUDA(cudaMemcpy(&beyond, mo.n_beyond.as(), 8, cudaMemcpyDeviceToHost));
    s.n_beyond = static_cast<int64_t>(beyond);
    std::vector<double>* dst[kMomentSums] = {&s.s1, &s.s2, &s.s3, &s.s4, &s.sabs};
    for (size_t k = 0; k < kMomentSums; ++k)
        dst[k]->assign(all.begin() + static_cast<ptrdiff_t>(k * C),
                       all.begin() + static_cast<ptrdiff_t>((k + 1) * C));
    const auto* mx = reinterpret_cast<const float*>(all.data() + kMomentSums * C);
    s.max_abs.assign(mx, mx + C);
    return s;
}

std::vector<int> TapReducer::hidden_layers() const {
    std::vector<int> out;
    for (const auto& [l, v] : impl_->hidden) out.push_back(l);
    return out;
}

HiddenSums TapReducer::hidden(int layer) const {
    const auto it = impl_->hidden.find(layer);
    QL_CHECK(it != impl_->hidden.end(), "GPU statistics: no output of layer {} was reduced", layer);
    char raw[kHiddenBytes];
    QL_CUDA(cudaMemcpy(raw, it->second.sums.as(), kHiddenBytes, cudaMemcpyDeviceToHost));
    HiddenSums s;
    s.n_tokens = it->second.n_tokens;
    s.n_cols = it->second.n_cols;
    std::memcpy(&s.sum_abs, raw + kSumAbs, 8);
    std::memcpy(&s.max_channel, raw + kMaxChannel, 8);
    std::memcpy(&s.max_abs, raw + kMaxAbs, 4);
    return s;
}

std::vector<std::string> TapReducer::hessian_keys() const {
    std::vector<std::string> out;
    for (const auto& [k, v] : impl_->hessians) out.push_back(k);
    return out;
}

std::vector<double> TapReducer::hessian(const std::string& key, int64_t* tokens) const {
    const auto it = impl_->hessians.find(key);
    QL_CHECK(it != impl_->hessians.end(), "GPU Hessians: no input '{}' was reduced", key);
    const int64_t n = it->second.n_cols;
    std::vector<double> out(static_cast<size_t>(n * n));
    QL_CUDA(cudaMemcpy(out.data(), it->second.acc.as(), out.size() * 8, cudaMemcpyDeviceToHost));
    if (tokens) *tokens = it->second.tokens;
    return out;
}

void TapReducer::drop_hessians() {
    QL_CUDA(cudaDeviceSynchronize());  // queued products may still read the accumulators
    impl_->hessians.clear();
    impl_->product.reset();
}

int64_t TapReducer::hessian_bytes(int64_t n_cols) {
    return n_cols * n_cols * 8;
}

struct TapForward::Buffers {
    DeviceBuffer tokens, h, logits;
};

TapForward::TapForward(CudaEngine& engine)
    : engine_(engine), buffers_(std::make_unique<Buffers>()) {}

TapForward::~TapForward() = default;

void TapForward::run(const std::vector<int32_t>& tokens, int64_t B, int64_t T) {
    const ModelConfig& c = engine_.config();
    const int64_t N = B * T;
    QL_CHECK(static_cast<int64_t>(tokens.size()) == N && N <= engine_.options().max_tokens,
             "CUDA engine: {} tokens for {} sequences of {} (at most {} per batch)", tokens.size(),
             B, T, engine_.options().max_tokens);
    for (size_t i = 0; i < tokens.size(); ++i)
        QL_CHECK(tokens[i] >= 0 && tokens[i] < c.vocab,
                 "CUDA engine: token id {} at position {} is outside the vocabulary of {}",
                 tokens[i], i, c.vocab);
    Buffers& b = *buffers_;
    b.tokens.resize(tokens.size() * 4);
    b.h.resize(static_cast<size_t>(N * engine_.state_width()) * 4);
    b.logits.resize(static_cast<size_t>(N * c.vocab) * 4);
    QL_CUDA(cudaMemcpy(b.tokens.as(), tokens.data(), tokens.size() * 4, cudaMemcpyHostToDevice));
    engine_.embed(b.tokens.as<int32_t>(), N, b.h.as<float>());
    for (int64_t l = 0; l < c.n_layers; ++l) engine_.run_layer(l, b.h.as<float>(), B, T);
    engine_.head(b.h.as<float>(), B, T, 0, b.logits.as<float>());
}

int64_t device_free_bytes() {
    size_t free = 0, total = 0;
    QL_CUDA(cudaMemGetInfo(&free, &total));
    return static_cast<int64_t>(free);
}

}  // namespace quantlens::cuda
