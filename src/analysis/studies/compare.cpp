#include "analysis/studies/compare.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "analysis/measure/chunks.h"
#include "analysis/measure/weight_metrics.h"
#include "analysis/sweep/sweep_cpu.h"
#include "analysis/write/gguf_metadata.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/mmap_file.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "core/utf8.h"
#include "engine/engine.h"
#include "engine/tokenizer.h"
#include "jobs/store.h"
#include "model/model.h"
#include "model/names.h"
#include "model/tensor_source.h"
#ifdef QL_HAVE_CUDA
#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/cuda_engine.h"
#include "engine/cuda/cuda_sweep.h"
#endif

namespace quantlens {
namespace {

using json = nlohmann::json;
constexpr const char* kModelUnit = "(model)";
constexpr const char* kQuantType = "quant";
constexpr size_t kListedProblems = 5;

std::string listed(const std::vector<std::string>& names) {
    std::string s;
    for (size_t i = 0; i < names.size() && i < kListedProblems; ++i)
        s += (i ? ", " : "") + names[i];
    if (names.size() > kListedProblems)
        s += fmt::format(" and {} more", names.size() - kListedProblems);
    return s;
}

// The attribution group of a tensor: token_embd, blk.N or output (output and output_norm).
std::string group_of(const TensorInfo& t) {
    if (t.layer >= 0) return fmt::format("blk.{}", t.layer);
    const bool embed = t.role == TensorRole::Embed || t.role == TensorRole::PleTokenEmbd ||
                       t.role == TensorRole::PleModelProj || t.role == TensorRole::PleProjNorm;
    return embed ? "token_embd" : "output";
}

// Both models over one batch, layer by layer: the hidden states and logits of each on the host.
class LockstepPair {
  public:
    virtual ~LockstepPair() = default;
    virtual void embed(std::span<const int32_t> tokens, int64_t B, int64_t T) = 0;
    virtual void run_layer(int64_t l) = 0;
    // Rows are width() floats apart (Engine::state_width()); the first C are the hidden state.
    virtual const std::vector<float>& hidden_fp() = 0;
    virtual const std::vector<float>& hidden_quant() = 0;
    virtual int64_t width() const = 0;
    // [B*(T-t0), V] logits of each.
    virtual void head(int64_t t0, std::vector<float>& fp, std::vector<float>& quant) = 0;
};

// The FP model held by one engine (CPU or CUDA); overriding tensors with QUANT's makes it the
// QUANT model. The per-tensor figures, the lock-step pass and the attribution ask only this.
class FpEngine {
  public:
    virtual ~FpEngine() = default;
    // The FP weight as the engine evaluates it (F16-rounded where the options say so).
    virtual std::vector<float> original(const std::string& name) const = 0;
    // One QUANT tensor in place of the FP one, and back.
    virtual void install(const TensorSource& quant, const SourceTensor& t) = 0;
    virtual void clear(const std::string& name) = 0;
    virtual bool has_override(const std::string& name) const = 0;
    // The sweep backend over this engine (its overrides stay the caller's).
    virtual std::unique_ptr<SweepBackend> backend(int64_t batch) = 0;
    // This engine beside one holding QUANT, on the same device.
    virtual std::unique_ptr<LockstepPair> pair_with(const TensorSource& quant) = 0;
};

// Everything a run of the job needs, loaded once.
struct CompareContext {
    CompareOptions opt;
    std::unique_ptr<Model> fp;
    std::unique_ptr<TensorSource> quant;
    EvalChunks chunks;
    std::unique_ptr<FpEngine> engine;
};

EngineOptions engine_options(const CompareContext& ctx) {
    EngineOptions eo;
    eo.f16_weights = ctx.opt.f16_base && ctx.fp->source() == Model::Source::HuggingFace;
    eo.ggml_numerics = ctx.opt.ggml_numerics;
    return eo;
}

// One QUANT tensor into the engine: its blocks, read in place, where the engine multiplies
// that type quantized (ggml numerics); its dequantized floats otherwise.
void install_quant(Engine& engine, const TensorSource& quant, const SourceTensor& t) {
    const GgmlType type = t.ggml_type.value_or(GgmlType::F32);
    if (engine.set_override_blocks(t.name, type, quant.raw(t), quant.path())) return;
    engine.set_override(t.name, quant.read_f32(t), type);
}

class CpuFpEngine final : public FpEngine {
  public:
    CpuFpEngine(const Model& fp, EngineOptions eo) : eo_(eo), engine_(fp, eo) {}
    std::vector<float> original(const std::string& name) const override {
        return engine_.original(name);
    }
    void install(const TensorSource& quant, const SourceTensor& t) override {
        install_quant(engine_, quant, t);
    }
    void clear(const std::string& name) override { engine_.clear_override(name); }
    bool has_override(const std::string& name) const override { return engine_.has_override(name); }
    std::unique_ptr<SweepBackend> backend(int64_t batch) override {
        return make_cpu_sweep_backend(engine_, batch);
    }
    std::unique_ptr<LockstepPair> pair_with(const TensorSource& quant) override;

  private:
    EngineOptions eo_;
    Engine engine_;
};

class CpuPair final : public LockstepPair {
  public:
    CpuPair(const Engine& fp, const EngineOptions& eo, const TensorSource& quant)
        : fp_(fp), q_(fp.model(), eo) {
        // Tensors only in QUANT are the converter's, derived from the config (check_compatible).
        for (const SourceTensor& t : quant.tensors())
            if (fp.model().find(t.name)) install_quant(q_, quant, t);
    }
    void embed(std::span<const int32_t> tokens, int64_t B, int64_t T) override {
        B_ = B, T_ = T;
        ha_ = fp_.embed(tokens), hb_ = q_.embed(tokens);
    }
    void run_layer(int64_t l) override {
        fp_.run_layer(l, ha_.data(), B_, T_);
        q_.run_layer(l, hb_.data(), B_, T_);
    }
    const std::vector<float>& hidden_fp() override { return ha_; }
    const std::vector<float>& hidden_quant() override { return hb_; }
    int64_t width() const override { return fp_.state_width(); }
    void head(int64_t t0, std::vector<float>& fp, std::vector<float>& quant) override {
        fp = fp_.head(ha_.data(), B_, T_, t0);
        quant = q_.head(hb_.data(), B_, T_, t0);
    }

  private:
    const Engine& fp_;
    Engine q_;
    std::vector<float> ha_, hb_;
    int64_t B_ = 0, T_ = 0;
};

std::unique_ptr<LockstepPair> CpuFpEngine::pair_with(const TensorSource& quant) {
    return std::make_unique<CpuPair>(engine_, eo_, quant);
}

#ifdef QL_HAVE_CUDA
// compare --gpu: F16 storage, or F32 with llama.cpp's numerics (cuda_engine.h). The QUANT
// model is a second engine loaded from QUANT's dequantized tensors for the lock-step pass; the
// attribution overrides the FP engine, as on the CPU.
cuda::CudaEngineOptions gpu_options(const CompareContext& ctx) {
    cuda::CudaEngineOptions o;
    o.precision = ctx.opt.ggml_numerics ? cuda::Precision::F32 : cuda::Precision::F16;
    o.ggml_numerics = ctx.opt.ggml_numerics;
    o.max_tokens = std::max<int64_t>(1, ctx.opt.batch) * ctx.opt.ctx;
    return o;
}

class GpuFpEngine final : public FpEngine {
  public:
    GpuFpEngine(const Model& fp, cuda::CudaEngineOptions o, bool round_f16)
        : options_(o),
          owned_(std::make_unique<cuda::CudaEngine>(fp.config(), o)),
          engine_(owned_.get()) {
        engine_->load_model(fp, round_f16);
        QL_CHECK(engine_->complete(), "{}: the CUDA engine is missing weights", fp.path());
    }
    std::vector<float> original(const std::string& name) const override {
        return engine_->original(name);
    }
    void install(const TensorSource& quant, const SourceTensor& t) override {
        const std::vector<float> v = quant.read_f32(t);
        engine_->set_override(t.name, v.data(), static_cast<int64_t>(v.size()),
                              t.ggml_type.value_or(GgmlType::F32));
        overridden_.insert(t.name);
    }
    void clear(const std::string& name) override {
        engine_->clear_override(name);
        overridden_.erase(name);
    }
    bool has_override(const std::string& name) const override {
        return overridden_.count(name) != 0;
    }
    // The backend takes the engine; this object keeps using it through engine_, so the
    // backend must not outlive it (run_compare_job destroys the backend first).
    std::unique_ptr<SweepBackend> backend(int64_t) override {
        QL_ASSERT(owned_);  // one backend per run
        return cuda::make_cuda_sweep_backend(std::move(owned_));
    }
    std::unique_ptr<LockstepPair> pair_with(const TensorSource& quant) override;

  private:
    cuda::CudaEngineOptions options_;
    std::unique_ptr<cuda::CudaEngine> owned_;  // until a backend takes it
    cuda::CudaEngine* engine_;
    std::set<std::string> overridden_;
};

class GpuPair final : public LockstepPair {
  public:
    GpuPair(cuda::CudaEngine& fp, const TensorSource& quant, cuda::CudaEngineOptions o)
        : fp_(fp), q_(fp.config(), with_blocks(quant, o)) {
        for (const auto& spec : q_.weight_specs()) {
            const SourceTensor* t = quant.find(spec.name);
            if (!t) continue;  // check_compatible: only FP's optional tensors
            if (q_.options().quantized_storage.count(spec.name)) {
                q_.load_weight_blocks(spec.name, *t->ggml_type, quant.raw(*t), quant.path());
                continue;
            }
            const std::vector<float> v = quant.read_f32(*t);
            q_.load_weight(spec.name, v.data(), static_cast<int64_t>(v.size()),
                           t->ggml_type.value_or(GgmlType::F32));
        }
        QL_CHECK(q_.complete(), "{}: the CUDA engine is missing weights", quant.path());
    }
    void embed(std::span<const int32_t> tokens, int64_t B, int64_t T) override {
        const int64_t N = B * T, C = fp_.state_width(), V = fp_.config().vocab;
        for (size_t i = 0; i < tokens.size(); ++i)
            QL_CHECK(tokens[i] >= 0 && tokens[i] < V,
                     "compare --gpu: token id {} at position {} is outside the vocabulary of {}",
                     tokens[i], i, V);
        B_ = B, T_ = T;
        tokens_.resize(tokens.size() * 4);
        QL_CUDA(cudaMemcpy(tokens_.as(), tokens.data(), tokens.size() * 4, cudaMemcpyHostToDevice));
        ha_.resize(static_cast<size_t>(N * C) * 4);
        hb_.resize(static_cast<size_t>(N * C) * 4);
        fp_.embed(tokens_.as<int32_t>(), N, ha_.as<float>());
        q_.embed(tokens_.as<int32_t>(), N, hb_.as<float>());
    }
    void run_layer(int64_t l) override {
        fp_.run_layer(l, ha_.as<float>(), B_, T_);
        q_.run_layer(l, hb_.as<float>(), B_, T_);
    }
    const std::vector<float>& hidden_fp() override { return download(ha_, host_a_); }
    const std::vector<float>& hidden_quant() override { return download(hb_, host_b_); }
    int64_t width() const override { return fp_.state_width(); }
    void head(int64_t t0, std::vector<float>& fp, std::vector<float>& quant) override {
        const auto n = static_cast<size_t>(B_ * (T_ - t0) * fp_.config().vocab);
        logits_.resize(n * 4);
        fp_.head(ha_.as<float>(), B_, T_, t0, logits_.as<float>());
        fp.resize(n);
        QL_CUDA(cudaMemcpy(fp.data(), logits_.as(), n * 4, cudaMemcpyDeviceToHost));
        q_.head(hb_.as<float>(), B_, T_, t0, logits_.as<float>());
        quant.resize(n);
        QL_CUDA(cudaMemcpy(quant.data(), logits_.as(), n * 4, cudaMemcpyDeviceToHost));
    }

  private:
    // QUANT's quantized matrices stay in their blocks on the GPU (cuda_engine.h).
    static cuda::CudaEngineOptions with_blocks(const TensorSource& quant,
                                               cuda::CudaEngineOptions o) {
        for (const SourceTensor& t : quant.tensors())
            if (t.ggml_type && cuda::keeps_blocks_on_gpu(*t.ggml_type, t.ne.size()) &&
                !quant.raw(t).empty())
                o.quantized_storage.emplace(t.name, *t.ggml_type);
        return o;
    }
    const std::vector<float>& download(const cuda::DeviceBuffer& d, std::vector<float>& host) {
        host.resize(static_cast<size_t>(B_ * T_ * fp_.state_width()));
        QL_CUDA(cudaMemcpy(host.data(), d.as(), host.size() * 4, cudaMemcpyDeviceToHost));
        return host;
    }
    cuda::CudaEngine& fp_;
    cuda::CudaEngine q_;
    cuda::DeviceBuffer tokens_, ha_, hb_, logits_;
    std::vector<float> host_a_, host_b_;
    int64_t B_ = 0, T_ = 0;
};

std::unique_ptr<LockstepPair> GpuFpEngine::pair_with(const TensorSource& quant) {
    return std::make_unique<GpuPair>(*engine_, quant, options_);
}
#endif

std::unique_ptr<FpEngine> make_fp_engine(const CompareContext& ctx) {
    const EngineOptions eo = engine_options(ctx);
    if (!ctx.opt.gpu) return std::make_unique<CpuFpEngine>(*ctx.fp, eo);
#ifdef QL_HAVE_CUDA
    return std::make_unique<GpuFpEngine>(*ctx.fp, gpu_options(ctx), eo.f16_weights);
#else
    fail(
        "compare --gpu: this quantlens was built without CUDA (configure with "
        "-DQUANTLENS_CUDA=ON)");
#endif
}

// ---- per tensor -------------------------------------------------------------------------

jobs::Metrics tensor_metrics(const CompareContext& ctx, const TensorInfo& t) {
    const SourceTensor& q = *ctx.quant->find(t.name);
    const std::vector<float> w_hat = ctx.quant->read_f32(q);
    const std::vector<float> w = ctx.engine->original(t.name);
    const WeightError e = weight_error(w.data(), w_hat.data(), t.n_rows(), t.n_per_row());
    return {{"bytes", static_cast<double>(q.nbytes)},
            {"bpw", q.bpw()},
            {"n_params", static_cast<double>(t.n_elements())},
            {"w_rmse", e.rmse},
            {"w_max_abs", e.max_abs},
            {"w_rel_fro", e.rel_frobenius},
            {"w_cos", e.cosine},
            {"w_snr_db", snr_db_for_json(e)}};
}

// ---- the lock-step pass of both models --------------------------------------------------

struct ActSums {
    double sq = 0, cos = 0;  // Σ (a − b)², Σ per-token cosine
    int64_t n_values = 0, n_tokens = 0;
};

// Rows are `width` floats apart (Engine::state_width()); the first C are the hidden state.
void add_act(ActSums& s, const std::vector<float>& a, const std::vector<float>& b, int64_t C,
             int64_t width) {
    const int64_t N = static_cast<int64_t>(a.size()) / width;
    std::vector<double> sq(static_cast<size_t>(N)), cs(static_cast<size_t>(N));
    parallel_for(
        static_cast<size_t>(N),
        [&](size_t begin, size_t end) {
            for (size_t i = begin; i < end; ++i) {
                const float* x = a.data() + i * width;
                const float* y = b.data() + i * width;
                double d2 = 0, xy = 0, xx = 0, yy = 0;
                for (int64_t c = 0; c < C; ++c) {
                    const double d = static_cast<double>(x[c]) - y[c];
                    d2 += d * d, xy += double(x[c]) * y[c], xx += double(x[c]) * x[c],
                        yy += double(y[c]) * y[c];
                }
                sq[i] = d2;
                cs[i] = xx > 0 && yy > 0 ? xy / std::sqrt(xx * yy) : (xx == yy ? 1.0 : 0.0);
            }
        },
        64);
    for (int64_t i = 0; i < N; ++i) s.sq += sq[i], s.cos += cs[i];  // in order: reproducible
    s.n_values += N * C;
    s.n_tokens += N;
}

struct PassResult {
    KldStats kld;
    std::vector<ActSums> act;  // [0] embedding, [1 + l] layer l
};

PassResult lockstep_pass(const CompareContext& ctx, LockstepPair& pair, Progress& progress) {
    const EvalChunks& ch = ctx.chunks;
    const ModelConfig& cfg = ctx.fp->config();
    const int64_t L = cfg.n_layers, C = cfg.hidden, V = cfg.vocab, T = ch.n_ctx;
    const int64_t S = T - 1 - ch.first_scored, R = T - ch.first_scored;
    PassResult out;
    out.act.resize(static_cast<size_t>(L + 1));
    EvalAccumulator acc;
    for (int64_t b0 = 0; b0 < ch.n_chunks; b0 += ctx.opt.batch) {
        const int64_t B = std::min(ctx.opt.batch, ch.n_chunks - b0);
        std::span<const int32_t> toks(ch.tokens.data() + b0 * T, static_cast<size_t>(B * T));
        pair.embed(toks, B, T);
        add_act(out.act[0], pair.hidden_fp(), pair.hidden_quant(), C, pair.width());
        for (int64_t l = 0; l < L; ++l) {
            pair.run_layer(l);
            add_act(out.act[static_cast<size_t>(l + 1)], pair.hidden_fp(), pair.hidden_quant(), C,
                    pair.width());
        }
        std::vector<float> la, lb;  // [B*R, V]
        pair.head(ch.first_scored, la, lb);
        std::vector<ScoredToken> scored(static_cast<size_t>(B * S));
        parallel_for(
            scored.size(),
            [&](size_t begin, size_t end) {
                std::vector<float> base(static_cast<size_t>(V));
                for (size_t i = begin; i < end; ++i) {
                    const int64_t b = static_cast<int64_t>(i) / S, s = static_cast<int64_t>(i) % S;
                    const int64_t row = b * R + s;
                    const int64_t top = log_softmax_row(la.data() + row * V, V, base.data());
                    const int32_t next =
                        ch.tokens[static_cast<size_t>((b0 + b) * T + ch.first_scored + s + 1)];
                    scored[i] = score_token(lb.data() + row * V, base.data(), top, V, next);
                }
            },
            16);
        for (const ScoredToken& t : scored) acc.add(t);
        progress.advance(B);
    }
    out.kld = acc.kld();
    return out;
}

jobs::Metrics act_metrics(const ActSums& s) {
    return {{"act_mse", s.n_values ? s.sq / static_cast<double>(s.n_values) : 0.0},
            {"act_cos", s.n_tokens ? s.cos / static_cast<double>(s.n_tokens) : 1.0}};
}

jobs::Metrics model_metrics(const KldStats& k, double weights_bpw) {
    return {{"n_scored", static_cast<double>(k.count)},
            {"kld_mean", k.kld_mean},
            {"kld_err", k.kld_err},
            {"kld_median", k.kld_median},
            {"kld_p90", k.kld_p90},
            {"kld_p99", k.kld_p99},
            {"kld_p999", k.kld_p999},
            {"kld_max", k.kld_max},
            {"top1_agree", k.same_top},
            {"top1_agree_err", k.same_top_err},
            {"rms_dp", k.rms_dp},
            {"rms_dp_err", k.rms_dp_err},
            {"ppl", k.ppl},
            {"ppl_err", k.ppl_err},
            {"ppl_base", k.ppl_base},
            {"ppl_base_err", k.ppl_base_err},
            {"ppl_delta", k.ppl - k.ppl_base},
            {"ln_ppl_ratio", k.ln_ppl_ratio},
            {"ln_ppl_ratio_err", k.ln_ppl_ratio_err},
            {"weights_bpw", weights_bpw}};
}

// ---- attribution ------------------------------------------------------------------------

// Where the perturbation of the tensors still overridden starts.
std::pair<int64_t, bool> first_perturbed(const CompareContext& ctx) {
    int64_t from = ctx.fp->config().n_layers;
    for (const TensorInfo& t : ctx.fp->tensors()) {
        if (!ctx.engine->has_override(t.name)) continue;
        if (t.role == TensorRole::Embed || t.role == TensorRole::PleTokenEmbd ||
            t.role == TensorRole::PleModelProj || t.role == TensorRole::PleProjNorm)
            return {0, true};  // read by embed() (Gemma 4's per-layer tables too)
        if (t.layer >= 0) from = std::min<int64_t>(from, t.layer);
    }
    return {from, false};
}

double kld_of(const PerturbedStats& st) {
    return st.n_scored ? st.kld_sum / static_cast<double>(st.n_scored) : 0.0;
}

std::string text_hash(const std::string& path) {
    read_utf8_text_file(path);  // a bad text fails here, before a job record exists
    return hash_files({path});
}

}  // namespace

json CompareOptions::to_json() const {
    return {{"fp", fp},
            {"quant", quant},
            {"text", text},
            {"ctx", ctx},
            {"chunks", chunks},
            {"batch", batch},
            {"f16_base", f16_base},
            {"ggml_numerics", ggml_numerics},
            {"attribution", attribution},
            {"gpu", gpu}};
}

CompareOptions CompareOptions::from_json(const json& j) {
    CompareOptions o;
    o.fp = j.at("fp").get<std::string>();
    o.quant = j.at("quant").get<std::string>();
    o.text = j.at("text").get<std::string>();
    o.ctx = job_param_int(j, "ctx", o.ctx);
    o.chunks = job_param_int(j, "chunks", o.chunks);
    o.batch = job_param_int(j, "batch", o.batch);
    o.f16_base = j.value("f16_base", o.f16_base);
    o.ggml_numerics = j.value("ggml_numerics", o.ggml_numerics);
    o.attribution = j.value("attribution", o.attribution);
    o.gpu = j.value("gpu", o.gpu);
    return o;
}

void check_compatible(const Model& fp, const TensorSource& quant) {
    const std::string pair = fmt::format("{} vs {}", fp.path(), quant.path());
    for (const TensorInfo& t : fp.tensors())
        QL_CHECK(!ggml_type_info(t.type).quantized,
                 "{}: the full-precision side holds {} as {}; compare needs the unquantized "
                 "model (an HF directory or an F32/F16/BF16 GGUF) as FP",
                 fp.path(), t.name, ggml_type_display_name(t.type));
    const ModelConfig& a = fp.config();
    if (const auto b = quant.config()) {
        QL_CHECK(a.arch == b->arch && a.n_layers == b->n_layers && a.hidden == b->hidden &&
                     a.vocab == b->vocab && a.n_experts == b->n_experts,
                 "{}: not the same model: FP is {} with {} layers, hidden {}, vocab {}, {} "
                 "experts; QUANT is {} with {} layers, hidden {}, vocab {}, {} experts",
                 pair, arch_name(a.arch), a.n_layers, a.hidden, a.vocab, a.n_experts,
                 arch_name(b->arch), b->n_layers, b->hidden, b->vocab, b->n_experts);
    }
    std::vector<std::string> missing, extra, shapes;
    for (const TensorInfo& t : fp.tensors()) {
        const SourceTensor* q = quant.find(t.name);
        if (!q) {
            missing.push_back(t.name);
        } else if (q->ne != t.ne) {
            shapes.push_back(
                fmt::format("{} {} vs {}", t.name, format_shape(t.ne), format_shape(q->ne)));
        }
    }
    // A GGUF written from an HF checkpoint also holds what llama.cpp's converter derives from
    // its config (Llama 3.1's rope_freqs, Phi-3's rope_factors_*), which FP then lacks.
    std::set<std::string> derived;
    for (const ExtraTensor& t : converter_extra_tensors(fp)) derived.insert(t.name);
    for (const SourceTensor& q : quant.tensors())
        if (!fp.find(q.name) && !derived.count(q.name)) extra.push_back(q.name);
    std::vector<std::string> problems;
    if (!missing.empty())
        problems.push_back(fmt::format("{} tensor(s) of FP missing from QUANT: {}", missing.size(),
                                       listed(missing)));
    if (!shapes.empty())
        problems.push_back(
            fmt::format("{} shape mismatch(es) (FP vs QUANT): {}", shapes.size(), listed(shapes)));
    if (!extra.empty())
        problems.push_back(
            fmt::format("{} tensor(s) only in QUANT: {}", extra.size(), listed(extra)));
    QL_CHECK(problems.empty(), "{}: {}", pair, fmt::join(problems, "; "));
}

int64_t create_compare_job(jobs::Store& store, const CompareOptions& options,
                           const std::string& command_line) {
    CompareOptions o = options;
    for (std::string* p : {&o.fp, &o.quant, &o.text}) *p = absolute_if_exists(*p);
    QL_CHECK(o.ctx >= 8 && o.batch >= 1, "compare: --ctx must be ≥ 8 and --batch ≥ 1");
#ifndef QL_HAVE_CUDA
    QL_CHECK(!o.gpu,
             "compare --gpu: this quantlens was built without CUDA (configure with "
             "-DQUANTLENS_CUDA=ON)");
#endif
    const auto fp = Model::open(o.fp);
    const auto quant = open_tensor_source(o.quant);
    check_compatible(*fp, *quant);
    const std::string th = text_hash(o.text);  // fails early on a missing text file
    json params = o.to_json();
    params["quant_hash"] = quant->content_hash();
    jobs::NewJob nj;
    nj.kind = jobs::JobKind::compare;
    nj.params = params.dump();
    nj.model = o.fp;
    nj.model_hash = fp->content_hash();
    nj.text_hash = th;
    nj.command = command_line;
    const int64_t id = store.create_job(nj);

    std::vector<jobs::Unit> units;
    std::vector<jobs::WorkItem> items;
    for (const TensorInfo& t : fp->tensors()) {
        const SourceTensor& q = *quant->find(t.name);
        units.push_back({t.name, t.layer, role_name(t.role), t.n_elements(),
                         json{{"ne", t.ne}, {"group", group_of(t)}}.dump()});
        items.push_back({t.name, q.storage});
    }
    units.push_back({kModelUnit, -1, "all", fp->total_params(), "{}"});
    items.push_back({kModelUnit, kQuantType});
    std::vector<std::string> groups = {"token_embd"};
    for (int64_t l = 0; l < fp->config().n_layers; ++l) groups.push_back(fmt::format("blk.{}", l));
    groups.push_back("output");
    for (size_t i = 0; i < groups.size(); ++i) {
        const int64_t layer = i == 0 || i + 1 == groups.size() ? -1 : static_cast<int64_t>(i) - 1;
        units.push_back({groups[i], layer, "layer", 0, "{}"});
        items.push_back({groups[i], kQuantType});
    }
    store.add_units(id, units);
    store.add_work_items(id, items);
    return id;
}

bool run_compare_job(jobs::Store& store, int64_t id) {
    const jobs::Job job = store.get_job_of_kind(id, jobs::JobKind::compare);
    const json params = json::parse(job.params);
    CompareContext ctx;
    ctx.opt = CompareOptions::from_json(params);
    ctx.fp = Model::open(ctx.opt.fp);
    ctx.quant = open_tensor_source(ctx.opt.quant);
    store.check_inputs(id, ctx.fp->content_hash(), text_hash(ctx.opt.text));
    QL_CHECK(ctx.quant->content_hash() == params.value("quant_hash", ""),
             "{}: QUANT changed on disk since job {} started", ctx.opt.quant, id);
    check_compatible(*ctx.fp, *ctx.quant);
    const std::vector<jobs::WorkItem> pending = store.pending_items(id);
    if (pending.empty()) return true;

    const Tokenizer tokenizer = Tokenizer::load(*ctx.fp);
    ctx.chunks = load_eval_chunks(tokenizer, ctx.opt.text, ctx.opt.ctx, ctx.opt.chunks);
    ctx.engine = make_fp_engine(ctx);

    // 1. Weights (cheap), committed one tensor at a time.
    double bytes = 0, params_n = 0;
    for (const TensorInfo& t : ctx.fp->tensors()) {
        const SourceTensor& q = *ctx.quant->find(t.name);
        bytes += static_cast<double>(q.nbytes);
        params_n += static_cast<double>(t.n_elements());
        if (store.is_done(id, t.name, q.storage)) continue;
        store.record_item(id, t.name, q.storage, tensor_metrics(ctx, t));
    }
    if (store.should_stop(id)) return false;

    // 2. Both models in lock step: KLD statistics and per-layer activations. The per-layer
    //    activation figures wait in an artifact for the attribution items of step 3.
    const int64_t L = ctx.fp->config().n_layers;
    if (!store.is_done(id, kModelUnit, kQuantType)) {
        store.set_message(id, "both models over the chunks");
        const std::unique_ptr<LockstepPair> pair = ctx.engine->pair_with(*ctx.quant);
        Progress progress(fmt::format("compare job {}", id), ctx.chunks.n_chunks, "chunks");
        const PassResult pass = lockstep_pass(ctx, *pair, progress);
        progress.finish();
        json act = json::object();
        act["token_embd"] = act_metrics(pass.act[0]);
        for (int64_t l = 0; l < L; ++l)
            act[fmt::format("blk.{}", l)] = act_metrics(pass.act[static_cast<size_t>(l + 1)]);
        store.transaction([&] {
            store.put_artifact(id, {"activations", true, act.dump()});
            store.record_item(id, kModelUnit, kQuantType,
                              model_metrics(pass.kld, params_n ? 8 * bytes / params_n : 0));
        });
    }
    if (store.should_stop(id)) return false;

    // 3. Attribution: each group back to FP in the otherwise quantized model.
    const json act = json::parse(store.get_artifact(id, "activations")->data);
    std::vector<std::string> groups;
    for (const auto& item : store.pending_items(id))
        if (item.type == kQuantType && item.unit != kModelUnit) groups.push_back(item.unit);
    if (groups.empty()) return true;
    std::unique_ptr<SweepBackend> backend;
    double kld_all = 0;
    if (ctx.opt.attribution) {
        store.set_message(id, "reference pass for attribution");
        backend = ctx.engine->backend(ctx.opt.batch);
        backend->prepare(ctx.chunks);
        for (const SourceTensor& t : ctx.quant->tensors())
            if (ctx.fp->find(t.name)) ctx.engine->install(*ctx.quant, t);
        kld_all = kld_of(backend->evaluate(0, true));
    }
    Progress progress(fmt::format("compare job {} attribution", id),
                      static_cast<int64_t>(groups.size()), "layers");
    for (const std::string& g : groups) {
        if (store.should_stop(id)) return false;
        jobs::Metrics m;
        if (act.contains(g)) m = act[g].get<jobs::Metrics>();
        if (backend) {
            store.set_message(id, fmt::format("{} back to full precision", g));
            std::vector<const SourceTensor*> swapped;
            for (const TensorInfo& t : ctx.fp->tensors())
                if (group_of(t) == g) {
                    ctx.engine->clear(t.name);
                    swapped.push_back(ctx.quant->find(t.name));
                }
            const auto [from, embedding] = first_perturbed(ctx);
            const double kld =
                swapped.empty() ? kld_all : kld_of(backend->evaluate(from, embedding));
            for (const SourceTensor* t : swapped) ctx.engine->install(*ctx.quant, *t);
            m["kld_all"] = kld_all;
            m["kld_swapped"] = kld;
            m["kld_reduction"] = kld_all - kld;
            m["kld_share"] = kld_all > 0 ? (kld_all - kld) / kld_all : 0.0;
        }
        store.record_item(id, g, kQuantType, m);
        progress.advance();
    }
    progress.finish();
    return true;
}

}  // namespace quantlens
