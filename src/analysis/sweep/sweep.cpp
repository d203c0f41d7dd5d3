#include "analysis/sweep/sweep.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "analysis/measure/chunks.h"
#include "analysis/measure/kld.h"
#include "analysis/measure/weight_metrics.h"
#include "analysis/sweep/expert_units.h"
#include "analysis/sweep/placement.h"
#include "analysis/sweep/rounding_choice.h"
#include "analysis/sweep/sweep_cpu.h"
#include "analysis/sweep/sweep_shard.h"
#include "analysis/write/gptq_formats.h"
#include "analysis/write/gptq_rounding.h"
#include "analysis/write/rounding.h"
#ifdef QL_HAVE_CUDA
#include "engine/cuda/cuda_sweep.h"
#endif
#include "core/error.h"
#include "core/hash.h"
#include "core/mmap_file.h"
#include "core/profile.h"
#include "core/progress.h"
#include "core/utf8.h"
#include "engine/engine.h"
#include "engine/kernels.h"
#include "engine/tokenizer.h"
#include "formats/imatrix.h"
#include "jobs/metric_names.h"
#include "jobs/runner.h"
#include "jobs/store.h"
#include "model/imatrix_coverage.h"
#include "model/model.h"
#include "quant/quant.h"

namespace quantlens {
namespace {

using json = nlohmann::json;
constexpr const char* kAllUnit = "(all)";

std::string type_name(GgmlType t) {
    return ggml_type_display_name(t);
}

GgmlType type_from_name(const std::string& s) {
    auto t = ggml_type_from_name(s);
    QL_CHECK(t.has_value(), "unknown quantization type '{}'", s);
    return *t;
}

// The fake-quantized values of one tensor at `type` (after llama.cpp's fallback), computed
// per matrix so stacked experts get their own importance column.
struct FakeQuantTensor {
    GgmlType type;
    bool fallback = false;
    std::vector<float> values;
    uint64_t bytes = 0;
};

FakeQuantTensor fake_quant_tensor(const TensorInfo& t, const std::vector<float>& original,
                                  GgmlType requested, const Imatrix* imatrix,
                                  const GptqRounding* gptq) {
    FakeQuantTensor q;
    const int64_t n_per_row = t.n_per_row();
    q.type = type_fits_row(requested, n_per_row) ? requested : fallback_type(requested, n_per_row);
    q.fallback = q.type != requested;
    q.values.resize(original.size());
    const int64_t n_mat = t.ne.size() >= 3 ? t.ne[2] : 1;
    const int64_t rows_per_mat = t.n_rows() / n_mat;
    for (int64_t m = 0; m < n_mat; ++m) {
        const float* imp = imatrix ? imatrix->importance(t.name, n_per_row, n_mat, m) : nullptr;
        const size_t off = static_cast<size_t>(m * rows_per_mat * n_per_row);
        if (gptq && gptq->covers(t.name, static_cast<int64_t>(t.ne.size()), q.type))
            gptq->fake_quantize(t.name, q.type, original.data() + off, q.values.data() + off,
                                rows_per_mat, n_per_row, imp);
        else
            fake_quantize(q.type, original.data() + off, q.values.data() + off, rows_per_mat,
                          n_per_row, imp);
    }
    q.bytes = ggml_row_size(q.type, n_per_row) * static_cast<uint64_t>(t.n_rows());
    return q;
}

struct SweepContext {
    SweepOptions opt;
    std::unique_ptr<Model> model;
    std::unique_ptr<Engine> engine;
    std::unique_ptr<SweepBackend> backend;
    std::optional<Imatrix> imatrix;
    std::unique_ptr<GptqRounding> gptq;
    std::map<std::string, SweepUnit> units;
    std::vector<std::string> all_tensors;  // the "(all)" unit
    int64_t n_layers = 0;
    std::optional<RoutingCounter> routing;  // sweep --experts: the reference pass's routing
    double hessian_seconds = 0;             // collecting the --gptq Hessians
    int64_t gptq_shared_windows = 0;        // sweep windows sharing text with the --gptq chunks
};

// The tensor's imatrix entry for every stacked matrix ([n_mat][n_per_row]), as
// fake_quant_tensor reads it; empty without an imatrix or an entry.
std::vector<float> importance_of(const SweepContext& ctx, const TensorInfo& t) {
    std::vector<float> out;
    if (!ctx.imatrix) return out;
    const int64_t n_per_row = t.n_per_row();
    const int64_t n_mat = t.ne.size() >= 3 ? t.ne[2] : 1;
    for (int64_t m = 0; m < n_mat; ++m) {
        const float* imp = ctx.imatrix->importance(t.name, n_per_row, n_mat, m);
        if (!imp) return {};
        out.insert(out.end(), imp, imp + n_per_row);
    }
    return out;
}

// The layer a unit's perturbation first affects, and whether the embedding must be redone.
std::pair<int64_t, bool> start_of(const SweepContext& ctx,
                                  const std::vector<std::string>& tensors) {
    int64_t from = ctx.n_layers;
    bool embedding = false;
    for (const auto& name : tensors) {
        const TensorInfo& t = ctx.model->get(name);
        // Gemma 4's per-layer embedding tables are read by embed() too.
        if (t.role == TensorRole::Embed || t.role == TensorRole::PleTokenEmbd ||
            t.role == TensorRole::PleModelProj || t.role == TensorRole::PleProjNorm)
            embedding = true;
        if (t.layer >= 0) from = std::min<int64_t>(from, t.layer);
    }
    if (embedding) from = 0;
    return {from, embedding};
}

void put_item_metrics(jobs::Metrics& m, const SweepContext& ctx, const WeightErrorAccumulator& acc,
                      uint64_t bytes, int64_t params, int64_t fallbacks, bool changed,
                      const PerturbedStats& st);

// One tensor of an item: its type and the inputs that round it (analysis/write/rounding.h).
struct TensorAssignment {
    std::string name;
    GgmlType type;
    RoundingInputs in;
    // A GPTQ-format item's format: the tensor takes the values its checkpoint decodes to
    // (analysis/write/gptq_formats.h), and `type` is unused.
    std::optional<GptqFormat> gptq_format = std::nullopt;
};

// Every assigned tensor at its type or GPTQ format, the rest of the model as the backend holds
// it; the item's metrics.
jobs::Metrics measure_assignments(SweepContext& ctx,
                                  const std::vector<TensorAssignment>& assigned) {
    const Imatrix* job_imatrix = ctx.imatrix ? &*ctx.imatrix : nullptr;
    const auto t0 = std::chrono::steady_clock::now();
    jobs::Metrics m;
    WeightErrorAccumulator acc;
    uint64_t bytes = 0;
    int64_t params = 0, fallbacks = 0;
    bool changed = false;
    std::vector<std::string> touched;
    for (const auto& [name, to, in, gptq_format] : assigned) {
        touched.push_back(name);
        const TensorInfo& t = ctx.model->get(name);
        if (gptq_format) {
            const std::vector<float> original = ctx.backend->original(name);
            GptqFakeQuant q =
                gptq_fake_quant(t, original, *gptq_format, ctx.gptq.get(), ctx.opt.gptq_act_order);
            bytes += q.bytes;
            params += t.n_elements();
            acc.merge(WeightErrorAccumulator::of(original.data(), q.values.data(), t.n_rows(),
                                                 t.n_per_row(), nullptr));
            changed = changed || q.values != original;
            ctx.backend->set_override(name, std::move(q.values), GgmlType::F32);
            continue;
        }
        const GgmlType written =
            type_fits_row(to, t.n_per_row()) ? to : fallback_type(to, t.n_per_row());
        bytes += ggml_row_size(written, t.n_per_row()) * static_cast<uint64_t>(t.n_rows());
        params += t.n_elements();
        fallbacks += written != to ? 1 : 0;
        // The backend's own kernel (with the tensor's importance, if any) unless a GPTQ
        // Hessian rounds it: the GPU path then moves no tensor to or from the host. Its
        // importance both rounds and weighs the error, so plain rounding beside an imatrix
        // takes the host path.
        if (!in.gptq && in.imatrix == job_imatrix) {
            const std::vector<float> importance = importance_of(ctx, t);
            if (const auto sums = ctx.backend->set_fake_quant_override(
                    name, written, importance, !importance.empty() && t.ne.size() < 3)) {
                acc.merge(WeightErrorAccumulator::from_sums(*sums));
                changed = changed || sums->sum_e2 > 0;
                continue;
            }
        }
        const std::vector<float> original = ctx.backend->original(name);
        FakeQuantTensor q = fake_quant_tensor(t, original, to, in.imatrix, in.gptq);
        const float* imp =
            ctx.imatrix && t.ne.size() < 3 ? ctx.imatrix->importance(name, t.n_per_row()) : nullptr;
        acc.merge(WeightErrorAccumulator::of(original.data(), q.values.data(), t.n_rows(),
                                             t.n_per_row(), imp));
        // With ggml numerics the type alone changes the result (how the matmul input is
        // rounded), even where the values come back unchanged; F16 over F16 weights changes
        // nothing and is not evaluated.
        changed = changed || q.values != original ||
                  (ctx.opt.ggml_numerics &&
                   ggml_act_rounding(q.type) !=
                       ggml_act_rounding(held_weight_type(t, ctx.opt.f16_weights)));
        ctx.backend->set_override(name, std::move(q.values), q.type);
    }
    PerturbedStats st;
    if (changed) {
        auto [from, embedding] = start_of(ctx, touched);
        if (!ctx.opt.prefix_cache) from = 0, embedding = true;
        st = ctx.backend->evaluate(from, embedding);
    }
    for (const auto& name : touched) ctx.backend->clear_override(name);
    put_item_metrics(m, ctx, acc, bytes, params, fallbacks, changed, st);
    m["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return m;
}

// `tensors` at `type`; a placement sweep also puts `base` (the tensors its variant does not
// raise) at `base_type`, so weight metrics and bytes then cover the whole model.
// `rounding`: how the tensors are rounded (analysis/write/rounding.h); nullopt rounds as the
// job's options say (importance with an imatrix, GPTQ where --gptq covers the tensor).
jobs::Metrics measure_item(SweepContext& ctx, const std::vector<std::string>& tensors,
                           GgmlType type, const std::vector<std::string>& base = {},
                           GgmlType base_type = GgmlType::F32,
                           const GptqFormat* gptq_format = nullptr,
                           std::optional<Rounding> rounding = std::nullopt) {
    const Imatrix* job_imatrix = ctx.imatrix ? &*ctx.imatrix : nullptr;
    const RoundingInputs in = rounding ? rounding_inputs(*rounding, job_imatrix, ctx.gptq.get())
                                       : RoundingInputs{job_imatrix, ctx.gptq.get()};
    std::vector<TensorAssignment> assigned;
    for (const auto& name : tensors)
        assigned.push_back(
            {name, type, in, gptq_format ? std::optional(*gptq_format) : std::nullopt});
    for (const auto& name : base)
        assigned.push_back({name, base_type, RoundingInputs{job_imatrix, ctx.gptq.get()}});
    return measure_assignments(ctx, assigned);
}

// The metrics every item records (sweep.h), from its weight errors and evaluation.
void put_item_metrics(jobs::Metrics& m, const SweepContext& ctx, const WeightErrorAccumulator& acc,
                      uint64_t bytes, int64_t params, int64_t fallbacks, bool changed,
                      const PerturbedStats& st) {
    const int64_t L = ctx.n_layers;
    const WeightError we = acc.result();
    m["w_rmse"] = we.rmse;
    m["w_max_abs"] = we.max_abs;
    m["w_mean_abs"] = we.mean_abs;
    m[metric::w_rel_fro] = we.rel_frobenius;
    m["w_cos"] = we.cosine;
    m["w_snr_db"] = snr_db_for_json(we);
    if (we.has_imatrix) {
        m["w_imat_err"] = we.imat_sq_err;
        m[metric::w_imat_rel] = we.imat_rel_err;
    }
    m[metric::bytes] = static_cast<double>(bytes);
    m[metric::bpw] = params ? 8.0 * static_cast<double>(bytes) / static_cast<double>(params) : 0.0;
    m[metric::fallbacks] = static_cast<double>(fallbacks);
    if (changed && st.n_scored > 0) {
        const double n = static_cast<double>(st.n_scored);
        m[metric::kld_mean] = st.kld_sum / n;
        m[metric::kld_max] = st.kld_max;
        if (static_cast<int64_t>(st.token_kld.size()) == st.n_scored) {
            const KldTails tails = kld_tails(st.token_kld);
            m[metric::kld_p99] = tails.p99;
            m[metric::kld_p999] = tails.p999;
        }
        m[metric::ppl] = std::exp(st.nll_sum / n);
        m[metric::ppl_base] = std::exp(st.ref_nll_sum / n);
        m[metric::ppl_delta] = m[metric::ppl] - m[metric::ppl_base];
        m[metric::ln_ppl_ratio] = (st.nll_sum - st.ref_nll_sum) / n;
        m[metric::top1_agree] = static_cast<double>(st.top1_same) / n;
        m[metric::rms_dp] = std::sqrt(st.dp_sq_sum / n);
        m[metric::act_mse] = st.final_mse;
        for (int64_t l = 0; l < L; ++l) m[fmt::format("act_mse_L{}", l)] = st.layer_mse[l];
    } else {
        // Identical weights: nothing downstream can change, so nothing is evaluated.
        for (const char* k :
             {metric::kld_mean, metric::kld_p99, metric::kld_p999, metric::kld_max,
              metric::ppl_delta, metric::ln_ppl_ratio, metric::rms_dp, metric::act_mse})
            m[k] = 0.0;
        m[metric::top1_agree] = 1.0;
        for (int64_t l = 0; l < L; ++l) m[fmt::format("act_mse_L{}", l)] = 0.0;
    }
}

// An expert unit (expert_units.h): expert E's matrix of each stacked tensor at `type`, every
// other expert unchanged, plus E's routing counts from the reference pass.
jobs::Metrics measure_expert_item(SweepContext& ctx, const std::string& unit, GgmlType type) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto [layer, expert] = *parse_expert_unit(unit);
    jobs::Metrics m;
    WeightErrorAccumulator acc;
    uint64_t bytes = 0;
    int64_t params = 0, fallbacks = 0;
    bool changed = false;
    const std::vector<std::string>& tensors = ctx.units.at(unit).tensors;
    for (const auto& name : tensors) {
        const TensorInfo& t = ctx.model->get(name);
        const int64_t n_mat = t.ne[2], n_per_row = t.n_per_row();
        const int64_t rows = t.n_rows() / n_mat;
        const GgmlType written =
            type_fits_row(type, n_per_row) ? type : fallback_type(type, n_per_row);
        fallbacks += written != type ? 1 : 0;
        bytes += ggml_row_size(written, n_per_row) * static_cast<uint64_t>(rows);
        params += rows * n_per_row;
        std::vector<float> values = ctx.backend->original(name);
        const size_t off = static_cast<size_t>(expert) * static_cast<size_t>(rows * n_per_row);
        const std::vector<float> slice(
            values.begin() + static_cast<std::ptrdiff_t>(off),
            values.begin() + static_cast<std::ptrdiff_t>(off + rows * n_per_row));
        const float* imp =
            ctx.imatrix ? ctx.imatrix->importance(name, n_per_row, n_mat, expert) : nullptr;
        fake_quantize(written, slice.data(), values.data() + off, rows, n_per_row, imp);
        acc.merge(
            WeightErrorAccumulator::of(slice.data(), values.data() + off, rows, n_per_row, imp));
        changed = changed || !std::equal(slice.begin(), slice.end(), values.begin() + off);
        ctx.backend->set_override(name, std::move(values), GgmlType::F32);
    }
    PerturbedStats st;
    if (changed) st = ctx.backend->evaluate(layer, false);
    for (const auto& name : tensors) ctx.backend->clear_override(name);
    put_item_metrics(m, ctx, acc, bytes, params, fallbacks, changed, st);
    if (ctx.routing) {
        const double routed = static_cast<double>(ctx.routing->counts()[layer][expert]);
        const double slots = static_cast<double>(ctx.routing->tokens(layer) * ctx.routing->top_k());
        m["route_tokens"] = routed;
        m[metric::route_share] = slots > 0 ? routed / slots : 0.0;
    }
    m["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return m;
}

std::string text_hash(const std::string& path) {
    read_utf8_text_file(path);  // a bad text fails here, before a job record exists
    return hash_files({path});
}

// What every item needs before the reference pass: the model, the imatrix and the units.
// Refusals that depend only on the options and this build: made before a job exists, so a
// refused sweep leaves no failed job behind.
void check_sweep_backend([[maybe_unused]] const SweepOptions& o) {
#ifndef QL_HAVE_CUDA
    QL_CHECK(!o.gpu,
             "sweep --gpu: this quantlens was built without CUDA (configure with "
             "-DQUANTLENS_CUDA=ON)");
#endif
}

// The one place that chooses the backend. The GPU route reads the weights from the model
// straight into GPU storage (F16, so F16-rounded weights are held exactly; F32 with
// --ggml-numerics, which must hold fake-quantized values exactly): no f32 copy of the model
// stays in host memory (GPTQ collects its Hessians on the GPU too).
std::unique_ptr<SweepBackend> make_sweep_backend(SweepContext& ctx) {
    if (!ctx.opt.gpu) return make_cpu_sweep_backend(*ctx.engine);
#ifdef QL_HAVE_CUDA
    cuda::CudaEngineOptions o;
    o.precision = ctx.opt.ggml_numerics ? cuda::Precision::F32 : cuda::Precision::F16;
    o.ggml_numerics = ctx.opt.ggml_numerics;
    if (ctx.engine) return cuda::make_cuda_sweep_backend(*ctx.engine, o);
    return cuda::make_cuda_sweep_backend(*ctx.model, o, ctx.opt.f16_weights);
#else
    fail("sweep --gpu: this quantlens was built without CUDA");
#endif
}

void open_context(SweepContext& ctx, const SweepOptions& opt) {
    ctx.opt = opt;
    ctx.model = Model::open(ctx.opt.model);
    if (!ctx.opt.imatrix.empty()) ctx.imatrix = load_imatrix_for(*ctx.model, ctx.opt.imatrix);
    ctx.n_layers = ctx.model->config().n_layers;
    for (auto& u : build_sweep_units(*ctx.model, ctx.opt)) ctx.units[u.name] = u;
    for (const auto& t : ctx.model->tensors())
        if (ctx.opt.gptq_formats.empty() ? t.quantizable : gptq_quantizes(t))
            ctx.all_tensors.push_back(t.name);
}

// The reference pass (engine, backend, prefix cache); returns the "reference" artifact.
json prepare_context(SweepContext& ctx, PhaseClock& clock) {
    Tokenizer tokenizer = Tokenizer::load(*ctx.model);
    const EvalChunks chunks =
        load_eval_chunks(tokenizer, ctx.opt.eval_text, ctx.opt.ctx, ctx.opt.n_tokens / ctx.opt.ctx);
    clock.lap("tokenize");
    EngineOptions eo;
    eo.f16_weights = ctx.opt.f16_weights;
    eo.ggml_numerics = ctx.opt.ggml_numerics;
    check_sweep_backend(ctx.opt);  // again: a resumed job may meet another build
    if (!ctx.opt.gpu) ctx.engine = std::make_unique<Engine>(*ctx.model, eo);
    const GptqSettings gptq{ctx.opt.gptq_text, ctx.opt.ctx, ctx.opt.gptq_chunks};
    if (!ctx.opt.gptq_text.empty()) {
        const auto t_h = std::chrono::steady_clock::now();
        ctx.gptq = ctx.opt.gpu
                       ? GptqRounding::on_gpu(*ctx.model, tokenizer, gptq, "sweep --gptq --gpu")
                       : std::make_unique<GptqRounding>(*ctx.engine, tokenizer, gptq);
        ctx.hessian_seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t_h).count();
        // GPTQ fits each tensor's rounding to its Hessian text: measured on that same text, a
        // GPTQ-rounded item looks better than it is elsewhere, the more so the fewer its bits
        // (bench/RESULTS.md, issue 29: llama-8m's GPTQ plan measured −21 % held out with
        // overlapping texts, −26 % with disjoint halves of calib.txt).
        ctx.gptq_shared_windows = ctx.gptq->windows_fitted_on(chunks.tokens, chunks.n_ctx);
        if (ctx.gptq_shared_windows > 0)
            fmt::print(stderr,
                       "sweep: warning: {} of the {} windows this sweep measures share text with "
                       "--gptq {} (its last {} × {} tokens fit GPTQ's rounding), so GPTQ-rounded "
                       "items are measured on the text they were fitted to (optimistic, most for "
                       "few bits). Use a longer --gptq text, fewer --gptq-chunks or --tokens, or "
                       "another file.\n",
                       ctx.gptq_shared_windows, chunks.n_chunks, ctx.opt.gptq_text,
                       ctx.gptq->n_chunks(), ctx.gptq->settings().ctx);
    }
    ctx.backend = make_sweep_backend(ctx);
    clock.lap("load the weights");
    const auto t_prep = std::chrono::steady_clock::now();
    if (ctx.opt.experts) {  // the routing of the reference pass, on the CPU or the GPU
        ctx.routing.emplace(ctx.model->config());
        ctx.routing->attach(*ctx.backend);
    }
    ctx.backend->prepare(chunks);
    if (ctx.routing) ctx.routing->detach(*ctx.backend);
    const double prep_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_prep).count();
    clock.lap("reference pass");
    return {{"n_chunks", chunks.n_chunks},
            {"gptq_shared_windows", ctx.gptq_shared_windows},
            {"n_ctx", chunks.n_ctx},
            {"n_scored", chunks.n_scored()},
            {"seconds", prep_s}};
}

jobs::Metrics measure_named(SweepContext& ctx, const std::string& unit, const std::string& type) {
    if (ctx.opt.rounding_choice) {  // checked at creation: tensor granularity or coarser units
        const auto rt = parse_rounded_type(type);
        QL_CHECK(rt.has_value(), "sweep: '{}' is not a type or type+rounding", type);
        const Rounding how = rt->second.value_or(base_rounding(ctx.imatrix.has_value()));
        return measure_item(ctx, unit == kAllUnit ? ctx.all_tensors : ctx.units.at(unit).tensors,
                            rt->first, {}, GgmlType::F32, nullptr, how);
    }
    if (!ctx.opt.gptq_formats.empty()) {
        const auto f = gptq_format_from_name(type);
        QL_CHECK(f.has_value(), "GPTQ sweep: '{}' is not a GPTQ format", type);
        return measure_item(ctx, unit == kAllUnit ? ctx.all_tensors : ctx.units.at(unit).tensors,
                            GgmlType::F32, {}, GgmlType::F32, &*f);
    }
    if (unit == kAllUnit) return measure_item(ctx, ctx.all_tensors, type_from_name(type));
    if (ctx.units.at(unit).role == kExpertRole)
        return measure_expert_item(ctx, unit, type_from_name(type));
    const std::vector<std::string>& raised = ctx.units.at(unit).tensors;
    if (!ctx.opt.base_type) return measure_item(ctx, raised, type_from_name(type));
    const std::set<std::string> raised_set(raised.begin(), raised.end());
    std::vector<std::string> rest;
    for (const auto& name : ctx.all_tensors)
        if (!raised_set.count(name)) rest.push_back(name);
    return measure_item(ctx, raised, type_from_name(type), rest, *ctx.opt.base_type);
}

// sweep --experts: per type and layer, the most sensitive measured expert and the routing
// shares' range, and over all expert rows the rank correlation of routing share with ΔKLD.
std::string expert_summary(
    const std::map<std::string, std::map<std::string, std::map<std::string, double>>>& by) {
    std::string out;
    for (const auto& [type, units] : by) {
        std::map<int, std::vector<std::pair<int, const std::map<std::string, double>*>>> layers;
        std::vector<double> share, kld;
        for (const auto& [unit, metrics] : units)
            if (const auto ex = parse_expert_unit(unit); ex && metrics.count(metric::kld_mean)) {
                layers[ex->first].emplace_back(ex->second, &metrics);
                if (metrics.count(metric::route_share)) {
                    share.push_back(metrics.at(metric::route_share));
                    kld.push_back(metrics.at(metric::kld_mean));
                }
            }
        if (layers.empty()) continue;
        out += fmt::format(
            "experts at {}: layer, most sensitive expert (ΔKLD, routing share), "
            "routing share min–max\n",
            type);
        for (const auto& [layer, experts] : layers) {
            const auto* worst = &experts.front();
            double lo = 1, hi = 0;
            for (const auto& e : experts) {
                if (e.second->at(metric::kld_mean) > worst->second->at(metric::kld_mean))
                    worst = &e;
                const auto it = e.second->find(metric::route_share);
                if (it != e.second->end())
                    lo = std::min(lo, it->second), hi = std::max(hi, it->second);
            }
            const auto ws = worst->second->find(metric::route_share);
            out += fmt::format("  blk.{:<4} expert {:<4} ({:.6f}, {:.3f})  {:.3f}–{:.3f}\n", layer,
                               worst->first, worst->second->at(metric::kld_mean),
                               ws != worst->second->end() ? ws->second : std::nan(""), lo, hi);
        }
        out += fmt::format("  Spearman(routing share, ΔKLD) over {} experts: {:.3f}\n", kld.size(),
                           spearman(share, kld));
    }
    return out;
}

}  // namespace

json model_info_json(const Model& model) {
    json tensors = json::array();
    uint64_t fixed = 0;
    int64_t params = 0;
    for (const auto& t : model.tensors()) {
        tensors.push_back({{"name", t.name},
                           {"hf_name", t.hf_name},
                           {"ne", t.ne},
                           {"layer", t.layer},
                           {"role", role_name(t.role)},
                           {"quantizable", t.quantizable},
                           {"params", t.n_elements()}});
        params += t.n_elements();
        if (!t.quantizable) fixed += static_cast<uint64_t>(t.n_elements()) * 4;  // kept F32
    }
    const auto& c = model.config();
    return {{"path", model.path()}, {"arch", arch_name(c.arch)},  {"n_layers", c.n_layers},
            {"n_params", params},   {"unquantized_bytes", fixed}, {"tensors", tensors}};
}

struct SweepMeasurer::Impl {
    SweepContext ctx;
};

SweepMeasurer::SweepMeasurer(const SweepOptions& options) : impl_(std::make_unique<Impl>()) {
    open_context(impl_->ctx, options);
}

SweepMeasurer::~SweepMeasurer() = default;

std::string SweepMeasurer::model_hash() const {
    return impl_->ctx.model->content_hash();
}

std::string SweepMeasurer::text_hash() const {
    return quantlens::text_hash(impl_->ctx.opt.eval_text);
}

std::string SweepMeasurer::prepare() {
    PhaseClock clock;
    return prepare_context(impl_->ctx, clock).dump();
}

std::map<std::string, double> SweepMeasurer::measure(const std::string& unit,
                                                     const std::string& type) {
    SweepContext& ctx = impl_->ctx;
    QL_CHECK(unit == kAllUnit || ctx.units.count(unit), "{}: sweep has no unit '{}'", ctx.opt.model,
             unit);
    QL_CHECK(ctx.backend != nullptr, "sweep: measure() before prepare()");
    return measure_named(ctx, unit, type);
}

std::map<std::string, double> SweepMeasurer::measure_mix(
    const std::vector<std::pair<std::string, std::string>>& unit_items) {
    SweepContext& ctx = impl_->ctx;
    QL_CHECK(ctx.backend != nullptr, "sweep: measure_mix() before prepare()");
    QL_CHECK(!ctx.opt.base_type,
             "{}: a mix of units at their own types needs a tensor, layer or class sweep (not a "
             "placement sweep)",
             ctx.opt.model);
    QL_CHECK(!unit_items.empty(), "{}: a mix of no units", ctx.opt.model);
    const Imatrix* job_imatrix = ctx.imatrix ? &*ctx.imatrix : nullptr;
    std::vector<TensorAssignment> assigned;
    std::set<std::string> seen;
    for (const auto& [unit, item] : unit_items) {
        QL_CHECK(unit != kAllUnit && ctx.units.count(unit),
                 "{}: sweep has no unit '{}' to put in a mix", ctx.opt.model, unit);
        QL_CHECK(ctx.units.at(unit).role != kExpertRole,
                 "{}: expert unit '{}' is a slice of a stacked tensor; a mix takes whole tensors",
                 ctx.opt.model, unit);
        QL_CHECK(seen.insert(unit).second, "{}: unit '{}' listed twice in a mix", ctx.opt.model,
                 unit);
        if (!ctx.opt.gptq_formats.empty()) {
            const auto f = gptq_format_from_name(item);
            QL_CHECK(f.has_value(), "{}: '{}' is not a GPTQ format (unit '{}' of a GPTQ sweep)",
                     ctx.opt.model, item, unit);
            for (const auto& name : ctx.units.at(unit).tensors)
                assigned.push_back({name, GgmlType::F32, {nullptr, ctx.gptq.get()}, *f});
            continue;
        }
        const auto rt = parse_rounded_type(item);
        QL_CHECK(rt.has_value(), "{}: '{}' is not a type or type+rounding (unit '{}')",
                 ctx.opt.model, item, unit);
        QL_CHECK(!rt->second || ctx.opt.rounding_choice,
                 "{}: item '{}' names a rounding, but the sweep has no --rounding-choice",
                 ctx.opt.model, item);
        RoundingInputs in{job_imatrix, ctx.gptq.get()};
        if (ctx.opt.rounding_choice)
            in = rounding_inputs(rt->second.value_or(base_rounding(ctx.imatrix.has_value())),
                                 job_imatrix, ctx.gptq.get());
        for (const auto& name : ctx.units.at(unit).tensors)
            assigned.push_back({name, rt->first, in});
    }
    return measure_assignments(ctx, assigned);
}

json SweepOptions::to_json() const {
    json types_json = json::array();
    for (auto t : types) types_json.push_back(type_name(t));
    json j = {{"model", model},
              {"eval_text", eval_text},
              {"n_tokens", n_tokens},
              {"ctx", ctx},
              {"types", types_json},
              {"granularity", granularity},
              {"imatrix", imatrix},
              {"prefix_cache", prefix_cache},
              {"uniform", uniform},
              {"f16_weights", f16_weights},
              {"ggml_numerics", ggml_numerics},
              {"budget_seconds", budget_seconds},
              {"gpu", gpu}};
    // Written only for placement sweeps, so the parameters of every other job stay as they
    // were (jobs merge compares them).
    if (base_type) {
        j["base"] = type_name(*base_type);
        j["placement_n"] = placement_n;
    }
    if (!gptq_text.empty()) {
        j["gptq_text"] = gptq_text;
        j["gptq_chunks"] = gptq_chunks;
    }
    if (!gptq_hash.empty()) j["gptq_hash"] = gptq_hash;
    if (!gptq_formats.empty()) {  // only then, so other jobs' parameters stay as they were
        json names = json::array();
        for (const auto& f : gptq_formats) names.push_back(gptq_format_name(f));
        j["gptq_formats"] = names;
        j["gptq_act_order"] = gptq_act_order;
    }
    if (experts) {  // only then, so other jobs' parameters stay as they were
        j["experts"] = true;
        j["expert_sample"] = expert_sample;
    }
    if (rounding_choice) {  // only then, so other jobs' parameters stay as they were
        j["rounding_choice"] = true;
        j["rounding_margin"] = rounding_margin;
        j["rounding_share"] = rounding_share;
    }
    return j;
}

SweepOptions SweepOptions::from_json(const json& j) {
    SweepOptions o;
    o.model = j.at("model").get<std::string>();
    o.eval_text = j.at("eval_text").get<std::string>();
    o.n_tokens = job_param_int(j, "n_tokens", o.n_tokens);
    o.ctx = job_param_int(j, "ctx", o.ctx);
    for (const auto& t : j.at("types")) o.types.push_back(type_from_name(t.get<std::string>()));
    o.granularity = j.value("granularity", o.granularity);
    o.imatrix = j.value("imatrix", "");
    o.prefix_cache = j.value("prefix_cache", true);
    o.uniform = j.value("uniform", true);
    o.f16_weights = j.value("f16_weights", true);
    o.ggml_numerics = j.value("ggml_numerics", false);  // absent in jobs made before the option
    o.budget_seconds = j.value("budget_seconds", 0.0);
    // The job runs from its stored options: without this --gpu was dropped and the sweep ran
    // on the CPU. Part of the options because GPU results differ in the last digits.
    o.gpu = j.value("gpu", false);
    if (j.contains("base")) o.base_type = type_from_name(j.at("base").get<std::string>());
    if (j.contains("placement_n")) {
        QL_CHECK(j["placement_n"].is_array(), "job params: 'placement_n' is {}, expected a list",
                 j["placement_n"].dump());
        for (const auto& n : j["placement_n"]) {
            QL_CHECK(n.is_number_integer() && n.get<int64_t>() > 0 && n.get<int64_t>() < 100000,
                     "job params: 'placement_n' holds {}, expected layer counts", n.dump());
            o.placement_n.push_back(static_cast<int>(n.get<int64_t>()));
        }
    }
    o.gptq_text = j.value("gptq_text", "");
    o.gptq_chunks = job_param_int(j, "gptq_chunks", o.gptq_chunks);
    o.gptq_hash = j.value("gptq_hash", "");
    if (j.contains("gptq_formats")) {
        QL_CHECK(j["gptq_formats"].is_array(), "job params: 'gptq_formats' is {}, expected a list",
                 j["gptq_formats"].dump());
        for (const auto& n : j["gptq_formats"]) {
            const auto f =
                n.is_string() ? gptq_format_from_name(n.get<std::string>()) : std::nullopt;
            QL_CHECK(f.has_value(), "job params: 'gptq_formats' holds {}, not a GPTQ format",
                     n.dump());
            o.gptq_formats.push_back(*f);
        }
        o.gptq_act_order = j.value("gptq_act_order", false);
    }
    o.experts = j.value("experts", false);
    o.expert_sample = job_param_int(j, "expert_sample", 0);
    o.rounding_choice = j.value("rounding_choice", false);
    o.rounding_margin = j.value("rounding_margin", o.rounding_margin);
    o.rounding_share = j.value("rounding_share", o.rounding_share);
    return o;
}

std::vector<GgmlType> default_sweep_types() {
    return {GgmlType::Q8_0, GgmlType::Q6_K, GgmlType::Q5_K,   GgmlType::Q4_K,
            GgmlType::Q3_K, GgmlType::Q2_K, GgmlType::IQ4_XS, GgmlType::IQ3_S};
}

std::vector<SweepUnit> build_sweep_units(const Model& model, const std::string& granularity) {
    QL_CHECK(granularity == "tensor" || granularity == "layer" || granularity == "class",
             "--granularity must be tensor, layer or class, not '{}'", granularity);
    std::vector<SweepUnit> units;
    std::map<std::string, size_t> index;
    for (const auto& t : model.tensors()) {
        if (!t.quantizable) continue;
        std::string key = t.name;
        int layer = t.layer;
        std::string role = role_name(t.role);
        if (granularity == "layer" && t.layer >= 0) {
            key = fmt::format("blk.{}", t.layer);
            role = "layer";
        } else if (granularity == "class" && t.layer >= 0) {
            key = role;
            layer = -1;
        }
        auto it = index.find(key);
        if (it == index.end()) {
            index[key] = units.size();
            units.push_back({key, layer, role, {}, 0});
            it = index.find(key);
        }
        units[it->second].tensors.push_back(t.name);
        units[it->second].n_params += t.n_elements();
    }
    QL_CHECK(!units.empty(), "{}: the model has no quantizable tensors", model.path());
    return units;
}

std::vector<SweepUnit> build_sweep_units(const Model& model, const SweepOptions& o) {
    if (!o.gptq_formats.empty()) {
        std::vector<SweepUnit> units;
        for (auto& u : gptq_units(model))
            units.push_back({u.name, u.layer, u.role, u.tensors, u.n_params});
        return units;
    }
    if (o.granularity != "placement") {
        std::vector<SweepUnit> units = build_sweep_units(model, o.granularity);
        if (o.experts)
            for (auto& u : build_expert_units(model, o.expert_sample))
                units.push_back(std::move(u));
        return units;
    }
    return build_placement_units(
        model, o.placement_n.empty()
                   ? default_placement_n(static_cast<int>(model.config().n_layers))
                   : o.placement_n);
}

int64_t create_sweep_job(jobs::Store& store, const SweepOptions& options,
                         const std::string& command_line) {
    check_sweep_backend(options);
    auto model = Model::open(options.model);
    SweepOptions o = options;
    for (std::string* p : {&o.model, &o.eval_text, &o.imatrix, &o.gptq_text})
        *p = absolute_if_exists(*p);
    const bool placement = o.granularity == "placement";
    const bool gptq_sweep = !o.gptq_formats.empty();
    QL_CHECK(!o.types.empty() || gptq_sweep, "sweep: no types to measure");
    if (gptq_sweep) {
        QL_CHECK(o.types.empty(),
                 "sweep: GPTQ formats and ggml types are measured in separate sweeps (plan "
                 "--format gptq reads the one, plan the other)");
        QL_CHECK(o.granularity == "tensor",
                 "sweep --types gptq: units are fixed (per layer q/k/v and gate/up together, as "
                 "vLLM fuses them); drop --granularity {}",
                 o.granularity);
        QL_CHECK(o.budget_seconds <= 0 && o.imatrix.empty(),
                 "sweep --types gptq: --budget and --imatrix are not supported for GPTQ formats");
        QL_CHECK(!o.gptq_act_order || !o.gptq_text.empty(),
                 "sweep --gptq-act-order: act order needs the Hessians of --gptq TEXT");
        for (const auto& t : model->tensors())
            if (gptq_quantizes(t))
                for (const auto& f : o.gptq_formats)
                    check_gptq_shape(f, t.n_rows(), t.n_per_row(), t.name);
    }
    if (o.experts) {
        QL_CHECK(!gptq_sweep && !placement,
                 "sweep --experts: per-expert units measure ggml types on a tensor, layer or "
                 "class sweep, not GPTQ formats or a placement study");
        QL_CHECK(!o.ggml_numerics && o.budget_seconds <= 0 && o.gptq_text.empty(),
                 "sweep --experts: not with --ggml-numerics, --budget or --gptq (one expert's "
                 "slice has no type of its own for llama.cpp's rounding; the proxy ranks whole "
                 "tensors)");
    } else {
        QL_CHECK(o.expert_sample == 0, "sweep: --expert-sample belongs to --experts");
    }
    if (o.rounding_choice) {
        QL_CHECK(!o.imatrix.empty() || !o.gptq_text.empty(),
                 "sweep --rounding-choice: give --imatrix (plain rounding is then the "
                 "alternative) and/or --gptq TEXT (GPTQ rounding); without them there is only "
                 "plain rounding to measure");
        QL_CHECK(!placement && !gptq_sweep && !o.experts && o.budget_seconds <= 0,
                 "sweep --rounding-choice: not with --placement, --types gptq, --experts or "
                 "--budget (it chooses among roundings of tensor, layer or class units)");
        QL_CHECK(
            std::isfinite(o.rounding_margin) && o.rounding_margin >= 0 && o.rounding_margin <= 10,
            "sweep --rounding-margin {}: expected a fraction ≥ 0 (0.05: measure an "
            "alternative whose proxy is within 5 % of the base rounding's or better)",
            o.rounding_margin);
        QL_CHECK(std::isfinite(o.rounding_share) && o.rounding_share >= 0 && o.rounding_share <= 1,
                 "sweep --rounding-share {}: expected a fraction of the base items in [0, 1]",
                 o.rounding_share);
    }
    QL_CHECK(o.ctx >= 8, "sweep: --ctx {} is too short (at least 8 tokens)", o.ctx);
    QL_CHECK(o.n_tokens >= o.ctx,
             "sweep: --tokens {} is less than one context of {} tokens; the sweep measures whole "
             "chunks, so give at least {}",
             o.n_tokens, o.ctx, o.ctx);
    auto check_target = [](GgmlType t, const char* what) {
        QL_CHECK((quant_traits(t).implemented && ggml_type_info(t).quantized) || t == GgmlType::F16,
                 "sweep: {} {} cannot be used as a quantization target", what, type_name(t));
    };
    for (auto t : o.types) check_target(t, "type");
    QL_CHECK(placement || !o.base_type,
             "sweep: --base belongs to --placement (granularity {} has no base type)",
             o.granularity);
    if (placement) {
        QL_CHECK(o.base_type.has_value(), "sweep --placement: no --base type");
        check_target(*o.base_type, "--base");
        QL_CHECK(std::find(o.types.begin(), o.types.end(), *o.base_type) == o.types.end(),
                 "sweep --placement: --types contains the --base type {}; raising a tensor to "
                 "the type it already has changes nothing",
                 type_name(*o.base_type));
        QL_CHECK(o.budget_seconds <= 0,
                 "sweep --placement: --budget ranks single units by a weight proxy; a "
                 "placement study measures every variant");
        // Resolved now so that a resumed job measures the same variants.
        if (o.placement_n.empty())
            o.placement_n = default_placement_n(static_cast<int>(model->config().n_layers));
    } else {
        QL_CHECK(o.placement_n.empty(), "sweep: --placement-n belongs to --placement");
    }
    jobs::NewJob nj;
    nj.kind = jobs::JobKind::sweep;
    // The calibration text is an input like the evaluation text: a resume must see the same.
    if (!o.gptq_text.empty()) o.gptq_hash = text_hash(o.gptq_text);
    nj.params = o.to_json().dump();
    nj.model = o.model;
    nj.model_hash = model->content_hash();
    nj.text_hash = text_hash(o.eval_text);
    nj.command = command_line;
    // Built before the job so that bad placement options leave no half-made job behind.
    const std::vector<SweepUnit> sweep_units = build_sweep_units(*model, o);
    const int64_t id = store.create_job(nj);
    std::vector<jobs::Unit> units;
    std::vector<jobs::WorkItem> items;
    for (const auto& u : sweep_units) {
        json extra = {{"tensors", u.tensors}};
        if (const auto ex = u.role == kExpertRole ? parse_expert_unit(u.name) : std::nullopt)
            extra["expert"] = ex->second;
        units.push_back({u.name, u.layer, u.role, u.n_params, extra.dump()});
        if (u.name == kPlacementBaseUnit) {  // raises nothing: one item, at the base type
            items.push_back({u.name, type_name(*o.base_type)});
            continue;
        }
        for (auto t : o.types) items.push_back({u.name, type_name(t)});
        for (const auto& f : o.gptq_formats) items.push_back({u.name, gptq_format_name(f)});
    }
    if (o.uniform) {
        int64_t params = 0;  // from the model: placement variants overlap
        for (const auto& t : model->tensors())
            if (gptq_sweep ? gptq_quantizes(t) : t.quantizable) params += t.n_elements();
        units.push_back({kAllUnit, -1, "all", params, "{}"});
        for (auto t : o.types) items.push_back({kAllUnit, type_name(t)});
        for (const auto& f : o.gptq_formats) items.push_back({kAllUnit, gptq_format_name(f)});
    }
    // The alternative roundings after every base item: a job stopped early has its base
    // sweep. Which ones apply to a unit is known once the Hessians are (run_sweep).
    if (o.rounding_choice)
        for (const auto& u : sweep_units)
            for (auto t : o.types) {
                if (!o.imatrix.empty() && !quant_traits(t).needs_importance)
                    items.push_back({u.name, rounded_type_name(t, Rounding::plain)});
                if (!o.gptq_text.empty() && gptq_supports(t))
                    items.push_back({u.name, rounded_type_name(t, Rounding::gptq)});
            }
    store.add_units(id, units);
    store.add_work_items(id, items);
    store.put_artifact(id, {"model_info", true, model_info_json(*model).dump()});
    return id;
}

bool run_sweep(jobs::Store& store, int64_t id) {
    const jobs::Job job = store.get_job_of_kind(id, jobs::JobKind::sweep);
    SweepContext ctx;
    PhaseClock clock;
    open_context(ctx, SweepOptions::from_json(json::parse(job.params)));
    clock.lap("open the model");
    store.check_inputs(id, ctx.model->content_hash(), text_hash(ctx.opt.eval_text));
    clock.lap("check the inputs' hashes");
    if (!ctx.opt.gptq_hash.empty())
        QL_CHECK(text_hash(ctx.opt.gptq_text) == ctx.opt.gptq_hash,
                 "{}: job {}: the --gptq calibration text '{}' changed since the job started",
                 store.path(), id, ctx.opt.gptq_text);

    // A sharded job (sweep --shard i/n) measures only its share of the items.
    std::vector<jobs::WorkItem> pending = sweep_items_to_measure(store, id, job.params);
    if (pending.empty()) return true;

    store.set_message(id, "reference pass");
    put_reference_artifact(store, id, job.params, prepare_context(ctx, clock).dump());
    if (ctx.routing) store.put_artifact(id, {"routing", true, ctx.routing->to_json().dump()});

    // Budget mode: the proxy orders the work (most damaging first) so a time budget spends
    // the functional measurements where they matter.
    if (ctx.opt.budget_seconds > 0) {
        std::map<std::pair<std::string, std::string>, double> proxy;
        for (const auto& item : pending) {
            if (item.unit == kAllUnit) continue;
            double sum = 0;
            for (const auto& name : ctx.units.at(item.unit).tensors) {
                const TensorInfo& t = ctx.model->get(name);
                // The backend's copy: a GPU sweep has no CPU engine.
                const std::vector<float> original = ctx.backend->original(name);
                FakeQuantTensor q =
                    fake_quant_tensor(t, original, type_from_name(item.type),
                                      ctx.imatrix ? &*ctx.imatrix : nullptr, ctx.gptq.get());
                const float* imp = ctx.imatrix && t.ne.size() < 3
                                       ? ctx.imatrix->importance(name, t.n_per_row())
                                       : nullptr;
                const WeightError we =
                    weight_error(original.data(), q.values.data(), t.n_rows(), t.n_per_row(), imp);
                sum +=
                    we.has_imatrix ? we.imat_sq_err : we.rmse * we.rmse * static_cast<double>(we.n);
            }
            proxy[{item.unit, item.type}] = sum;
        }
        std::stable_sort(pending.begin(), pending.end(), [&](const auto& a, const auto& b) {
            return proxy[{a.unit, a.type}] > proxy[{b.unit, b.type}];
        });
        json pj = json::array();
        for (const auto& [k, v] : proxy)
            pj.push_back({{"unit", k.first}, {"type", k.second}, {"proxy", v}});
        store.put_artifact(id, {"proxy", true, pj.dump()});
    }

    // --rounding-choice: which alternative roundings are evaluated (rounding_choice.h), decided
    // when the first one comes up (after every base item) and kept, so that a resumed job
    // evaluates the same ones.
    RoundingDecisions roundings;
    if (const auto art = store.get_artifact(id, "rounding_choice"))
        roundings = rounding_decisions_from_json(json::parse(art->data));
    const auto decide_roundings = [&] {
        store.set_message(id, "rounding proxies");
        const auto t0 = std::chrono::steady_clock::now();
        std::map<std::string, std::vector<std::string>> unit_tensors;
        for (const auto& [name, u] : ctx.units) unit_tensors[name] = u.tensors;
        RoundingProxyInputs in;
        in.model = ctx.model.get();
        in.imatrix = ctx.imatrix ? &*ctx.imatrix : nullptr;
        in.gptq = ctx.gptq.get();
        in.original = [&](const std::string& name) { return ctx.backend->original(name); };
        roundings = rounding_proxies(in, unit_tensors, store.work_items(id));
        std::map<std::pair<std::string, std::string>, double> base_kld;
        size_t n_base = 0;
        for (const auto& item : store.work_items(id))
            if (item.unit != kAllUnit && item.type.find('+') == std::string::npos) ++n_base;
        for (const auto& m : store.measurements(id, "", metric::kld_mean))
            if (m.type.find('+') == std::string::npos) base_kld[{m.unit, m.type}] = m.value;
        const RoundingChoiceRule rule{ctx.opt.rounding_margin, ctx.opt.rounding_share};
        choose_roundings(roundings, base_kld, n_base, rule);
        const double proxy_s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        store.put_artifact(
            id, {"rounding_choice", true,
                 rounding_choice_json(roundings, rule, proxy_s, ctx.hessian_seconds).dump()});
    };

    const jobs::ItemCounts counts = store.item_counts(id);
    Progress progress(fmt::format("sweep job {}", id),
                      counts.done + static_cast<int64_t>(pending.size()), "items");
    progress.set(counts.done);
    const auto t_start = std::chrono::steady_clock::now();
    for (const auto& item : pending) {
        if (store.should_stop(id)) return false;
        if (ctx.opt.budget_seconds > 0 &&
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count() >
                ctx.opt.budget_seconds) {
            store.set_message(id, "time budget spent; resume to measure the rest");
            progress.finish();
            return false;
        }
        store.set_message(id, fmt::format("{} × {}", item.unit, item.type));
        if (ctx.opt.rounding_choice && roundings.empty() &&
            item.type.find('+') != std::string::npos)
            decide_roundings();
        const auto decision = roundings.find({item.unit, item.type});
        if (decision != roundings.end() && !decision->second.evaluate) {
            // The proxy says this rounding cannot win: its proxies are the record.
            store.record_item(id, item.unit, item.type,
                              {{metric::rounding_proxy, decision->second.proxy},
                               {metric::rounding_proxy_base, decision->second.proxy_base},
                               {metric::rounding_measured, 0.0},
                               {"seconds", 0.0}});
            progress.advance();
            continue;
        }
        jobs::Metrics m = measure_named(ctx, item.unit, item.type);
        if (decision != roundings.end()) {
            m[metric::rounding_proxy] = decision->second.proxy;
            m[metric::rounding_proxy_base] = decision->second.proxy_base;
            m[metric::rounding_measured] = 1.0;
        }
        store.record_item(id, item.unit, item.type, m);
        progress.advance();
    }
    progress.finish();
    clock.lap("items");
    if (const auto cost = rounding_cost_json(store, id))
        store.put_artifact(id, {"rounding_cost", true, cost->dump()});
    return true;
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
    const size_t n = std::min(a.size(), b.size());
    if (n < 3) return std::nan("");
    auto ranks = [n](const std::vector<double>& v) {
        std::vector<size_t> idx(n);
        for (size_t i = 0; i < n; ++i) idx[i] = i;
        std::sort(idx.begin(), idx.end(), [&](size_t x, size_t y) { return v[x] < v[y]; });
        std::vector<double> r(n);
        for (size_t i = 0; i < n;) {
            size_t j = i;
            while (j + 1 < n && v[idx[j + 1]] == v[idx[i]]) ++j;
            for (size_t k = i; k <= j; ++k) r[idx[k]] = 0.5 * static_cast<double>(i + j);
            i = j + 1;
        }
        return r;
    };
    const auto ra = ranks(a), rb = ranks(b);
    double ma = 0, mb = 0;
    for (size_t i = 0; i < n; ++i) ma += ra[i], mb += rb[i];
    ma /= static_cast<double>(n), mb /= static_cast<double>(n);
    double sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < n; ++i) {
        sab += (ra[i] - ma) * (rb[i] - mb);
        saa += (ra[i] - ma) * (ra[i] - ma);
        sbb += (rb[i] - mb) * (rb[i] - mb);
    }
    return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : std::nan("");
}

std::string sweep_summary(jobs::Store& store, int64_t id) {
    if (SweepOptions::from_json(json::parse(store.get_job(id).params)).granularity == "placement")
        return placement_summary(store, id);
    const auto ms = store.measurements(id);
    std::map<std::string, std::map<std::string, std::map<std::string, double>>>
        by;  // type→unit→metric
    for (const auto& m : ms) by[m.type][m.unit][m.metric] = m.value;
    std::string out = fmt::format("{:<8} {:>12} {:>14} {:>14} {:>8} {:>12} {:>12}  {}\n", "type",
                                  "bpw(all)", "Σ unit ΔKLD", "KLD (all)", "ratio", "p99 (all)",
                                  "p99.9 (all)", "most sensitive unit");
    for (auto& [type, units] : by) {
        if (const auto rt = parse_rounded_type(type); rt && rt->second)
            continue;  // --rounding-choice alternatives: counted in the cost line below
        double sum = 0, worst = -1;
        std::string worst_unit;
        for (auto& [unit, metrics] : units) {
            if (unit == kAllUnit || !metrics.count(metric::kld_mean) || parse_expert_unit(unit))
                continue;  // expert units overlap the stacked tensors' units
            sum += metrics[metric::kld_mean];
            if (metrics[metric::kld_mean] > worst)
                worst = metrics[metric::kld_mean], worst_unit = unit;
        }
        const bool has_all = units.count(kAllUnit) && units[kAllUnit].count(metric::kld_mean);
        const double all = has_all ? units[kAllUnit][metric::kld_mean] : std::nan("");
        const double bpw = has_all ? units[kAllUnit]["bpw"] : std::nan("");
        const auto all_metric = [&](const char* key) {
            return has_all && units[kAllUnit].count(key) ? units[kAllUnit][key] : std::nan("");
        };
        out += fmt::format(
            "{:<8} {:>12.3f} {:>14.6f} {:>14.6f} {:>8.3f} {:>12.5f} {:>12.5f}  {} "
            "({:.6f})\n",
            type, bpw, sum, all, has_all && sum > 0 ? all / sum : std::nan(""),
            all_metric(metric::kld_p99), all_metric(metric::kld_p999), worst_unit, worst);
    }
    // How well the weight proxy ranks the functional damage.
    std::vector<double> proxy, kld;
    for (auto& [type, units] : by)
        for (auto& [unit, metrics] : units) {
            if (unit == kAllUnit || !metrics.count(metric::kld_mean)) continue;
            proxy.push_back(metrics.count(metric::w_imat_rel) ? metrics[metric::w_imat_rel]
                                                              : metrics[metric::w_rel_fro]);
            kld.push_back(metrics[metric::kld_mean]);
        }
    out += fmt::format(
        "Spearman rank correlation of the weight proxy with ΔKLD over {} items: {:.3f}\n",
        kld.size(), spearman(proxy, kld));
    out += expert_summary(by);
    out += rounding_cost_summary(store, id);
    return out;
}

}  // namespace quantlens
