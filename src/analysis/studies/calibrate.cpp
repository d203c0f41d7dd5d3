// Calibration run and its JSON artifact; see calibrate.h.
#include "analysis/studies/calibrate.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>

#include <fmt/format.h>

#include "analysis/measure/chunks.h"
#include "core/error.h"
#include "core/half.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "engine/engine.h"
#ifdef QL_HAVE_CUDA
#include "engine/cuda/cuda_engine.h"
#include "engine/cuda/cuda_stats.h"
#endif
#include "engine/tokenizer.h"
#include "formats/imatrix.h"
#include "model/model.h"

namespace quantlens {

namespace {

// The loop shared by the CPU and GPU runs: `forward(tokens, B)` runs B chunks through every
// layer, feeding `col` (or, on the GPU, sums that `finish` hands to `col` after the last
// batch); progress, the observer, timing and the result are common.
using BatchForward = std::function<void(std::span<const int32_t> tokens, int64_t B)>;

CalibrationResult calibrate_loop(const EvalChunks& chunks, const std::string& dataset,
                                 const CalibrateOptions& options, const CalibrateObserver& observer,
                                 ActivationCollector& col, const BatchForward& forward,
                                 const std::function<void()>& finish = {}) {
    QL_CHECK(chunks.n_chunks >= 1 && chunks.n_ctx >= 1, "{}: no chunk of {} tokens to calibrate on",
             dataset, chunks.n_ctx);
    const int64_t T = chunks.n_ctx;
    const int64_t batch = std::max<int64_t>(1, options.batch);
    std::optional<Progress> progress;
    if (options.progress) progress.emplace("calibrate", chunks.n_chunks * T, "tok");
    const auto t0 = std::chrono::steady_clock::now();
    int64_t done = 0;
    for (int64_t c = 0; c < chunks.n_chunks; c += batch) {
        const int64_t B = std::min(batch, chunks.n_chunks - c);
        forward(std::span<const int32_t>(chunks.tokens.data() + c * T, static_cast<size_t>(B * T)),
                B);
        done = c + B;
        if (progress) progress->advance(B * T);
        if (observer && !observer(done, chunks.n_chunks)) break;
    }
    if (progress) progress->finish();
    if (finish) finish();

    CalibrationResult r;
    r.dataset = dataset;
    r.n_ctx = T;
    r.n_chunks = done;
    r.n_tokens = done * T;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.tokens_per_second = r.seconds > 0 ? static_cast<double>(r.n_tokens) / r.seconds : 0;
    r.tensors = col.tensor_stats();
    r.layers = col.layer_stats();
    r.imatrix = col.imatrix_entries();
    return r;
}

}  // namespace

CalibrationResult run_calibration(Engine& engine, const EvalChunks& chunks,
                                  const std::string& dataset, const CalibrateOptions& options,
                                  const CalibrateObserver& observer,
                                  ActivationCollector* collector) {
    ActivationCollector own(engine.config().n_experts);
    ActivationCollector& col = collector ? *collector : own;
    col.set_capture(options.capture_rows, std::max<int64_t>(1, options.capture_stride));
    const ScopedEngineHook attached(engine, col.hook());
    const int64_t T = chunks.n_ctx;
    return calibrate_loop(
        chunks, dataset, options, observer, col, [&](std::span<const int32_t> tokens, int64_t B) {
            std::vector<float> h = engine.embed(tokens);
            QL_ASSERT(static_cast<int64_t>(h.size()) == B * T * engine.state_width());
            for (int64_t l = 0; l < engine.n_layers(); ++l) engine.run_layer(l, h.data(), B, T);
        });
}

#ifdef QL_HAVE_CUDA
namespace {

// A tapped input: its layer, the expert whose routed rows it holds (-1: none), and every
// weight it feeds.
struct TappedInput {
    int layer = -1, expert = -1;
    std::vector<std::string> weights;
};

// The GPU's sums (engine/cuda/cuda_stats.h) into the collector, one tapped input copied to
// every weight it feeds (as on_shared_input does on the CPU).
void adopt_gpu_sums(const cuda::TapReducer& sums, const std::map<std::string, TappedInput>& inputs,
                    ActivationCollector& col) {
    for (const auto& [key, fed] : inputs) {
        const cuda::ChannelSums s = sums.moments(key);
        ChannelMoments m(s.n_cols);
        m.n_rows = s.n_rows;
        m.n_beyond = s.n_beyond;
        m.s1 = s.s1;
        m.s2 = s.s2;
        m.s3 = s.s3;
        m.s4 = s.s4;
        m.sabs = s.sabs;
        m.max_abs = s.max_abs;
        for (const std::string& name : fed.weights)
            col.adopt_moments(name, fed.layer, m, fed.expert);
    }
    for (int l : sums.hidden_layers()) {
        const cuda::HiddenSums h = sums.hidden(l);
        LayerHiddenStats ls;
        ls.layer = l;
        ls.n_tokens = h.n_tokens;
        ls.max_abs = h.max_abs;
        ls.mean_abs = h.mean_abs();
        ls.max_channel = h.max_channel;
        col.adopt_layer(ls);
    }
}

}  // namespace
#endif

CalibrationResult calibrate_text_gpu(const Model& model, const std::string& text_path,
                                     const CalibrateOptions& options,
                                     const CalibrateObserver& observer) {
#ifdef QL_HAVE_CUDA
    QL_CHECK(options.capture_rows == 0,
             "calibrate --gpu: sample input rows (capture_rows, for AWQ) are kept on the CPU "
             "path only");
    const Tokenizer tokenizer = Tokenizer::load(model);
    const EvalChunks chunks =
        load_eval_chunks(tokenizer, text_path, options.n_ctx, options.max_chunks);
    cuda::CudaEngineOptions o;
    o.precision = cuda::Precision::F16;
    o.max_tokens = std::max<int64_t>(1, options.batch) * options.n_ctx;
    cuda::CudaEngine gpu(model.config(), o);
    // Every statistic is reduced on the GPU where the tap fires; nothing is downloaded until
    // the end. Inputs by the first weight they feed (and the expert, for routed rows).
    cuda::TapReducer sums(o.precision);
    std::map<std::string, TappedInput> inputs;
    gpu.set_tap([&](const cuda::ActivationTap& t) {
        if (t.kind == cuda::ActivationTap::Kind::LayerOutput) {
            sums.add_hidden(t);
            return;
        }
        const std::vector<std::string>& w = *t.weights;
        const std::string key = t.expert < 0 ? w[0] : fmt::format("{}#{}", w[0], t.expert);
        inputs.try_emplace(key, TappedInput{t.layer, t.expert, w});
        sums.add_moments(key, t);
    });
    gpu.load_model(model);
    ActivationCollector col(model.config().n_experts);
    const int64_t T = chunks.n_ctx;
    return calibrate_loop(
        chunks, text_path, options, observer, col,
        [&](std::span<const int32_t> tokens, int64_t B) {
            gpu.run_layers(std::vector<int32_t>(tokens.begin(), tokens.end()), B, T);
        },
        [&] { adopt_gpu_sums(sums, inputs, col); });
#else
    (void)text_path, (void)options, (void)observer;
    fail(
        "calibrate --gpu: this quantlens was built without CUDA (configure with "
        "-DQUANTLENS_CUDA=ON); {} can be calibrated on the CPU",
        model.path());
#endif
}

CalibrationResult calibrate_text(Engine& engine, const std::string& text_path,
                                 const CalibrateOptions& options, const CalibrateObserver& observer,
                                 ActivationCollector* collector) {
    const Tokenizer tokenizer = Tokenizer::load(engine.model());
    const EvalChunks chunks =
        load_eval_chunks(tokenizer, text_path, options.n_ctx, options.max_chunks);
    return run_calibration(engine, chunks, text_path, options, observer, collector);
}

std::vector<WeightDiagnostics> weight_histograms(const Engine& engine) {
    std::vector<const TensorInfo*> infos;
    for (const TensorInfo& t : engine.model().tensors())
        if (t.quantizable) infos.push_back(&t);
    std::vector<WeightDiagnostics> out(infos.size());
    parallel_for(infos.size(), [&](size_t begin, size_t end) {
        for (size_t i = begin; i < end; ++i) {
            const TensorInfo& t = *infos[i];
            const std::vector<float>& w = engine.original(t.name);
            QL_CHECK(static_cast<int64_t>(w.size()) == t.n_rows() * t.n_per_row(),
                     "{}: tensor '{}': {} values held, expected {} x {}", engine.model().path(),
                     t.name, w.size(), t.n_rows(), t.n_per_row());
            out[i] = diagnose_weight(t.name, w.data(), t.n_rows(), t.n_per_row(), {});
        }
    });
    return out;
}

std::vector<WeightDiagnostics> weight_histograms(const Model& model, bool f16_weights) {
    std::vector<const TensorInfo*> infos;
    for (const TensorInfo& t : model.tensors())
        if (t.quantizable) infos.push_back(&t);
    std::vector<WeightDiagnostics> out(infos.size());
    // A tensor per thread, read and dropped: the model is never held whole in floats.
    parallel_for(
        infos.size(),
        [&](size_t begin, size_t end) {
            for (size_t i = begin; i < end; ++i) {
                const TensorInfo& t = *infos[i];
                std::vector<float> w = model.read_f32(t);
                if (f16_weights)
                    for (float& x : w) x = round_to_f16(x);
                out[i] = diagnose_weight(t.name, w.data(), t.n_rows(), t.n_per_row(), {});
            }
        },
        1);
    return out;
}

ImatrixWriteInfo imatrix_write_info(const CalibrationResult& result) {
    ImatrixWriteInfo info;
    info.chunk_size = result.n_ctx;
    info.chunk_count = result.n_chunks;
    info.datasets = {result.dataset};
    return info;
}

namespace {

// 4 significant digits: enough for plots, a fraction of the JSON size.
double round4(double v) {
    if (v == 0 || !std::isfinite(v)) return std::isfinite(v) ? v : 0;
    const double mag = std::pow(10.0, 3 - std::floor(std::log10(std::fabs(v))));
    return std::round(v * mag) / mag;
}

nlohmann::json rounded(const std::vector<float>& v) {
    nlohmann::json a = nlohmann::json::array();
    for (float x : v) a.push_back(round4(x));
    return a;
}

std::string role_of(const std::string& name) {
    // blk.N.ROLE.weight → ROLE
    const size_t a = name.find('.', 4);
    const size_t b = name.rfind(".weight");
    if (name.rfind("blk.", 0) != 0 || a == std::string::npos || b == std::string::npos || b <= a)
        return name;
    return name.substr(a + 1, b - a - 1);
}

nlohmann::json weight_hist_json(const WeightDiagnostics& d) {
    nlohmann::json h = to_json(d)["weight_hist"];
    h["n"] = d.n_rows * d.n_cols;
    h["frac_beyond_3sigma"] = d.outlier_frac;  // weight_histograms() uses k = 3
    h["excess_kurtosis"] = d.excess_kurtosis;
    return h;
}

}  // namespace

nlohmann::json calibration_json(const CalibrationResult& r, const std::string& model) {
    nlohmann::json j;
    j["model"] = model;
    j["text"] = r.dataset;
    j["n_ctx"] = r.n_ctx;
    j["n_chunks"] = r.n_chunks;
    j["n_tokens"] = r.n_tokens;
    j["seconds"] = r.seconds;
    j["tokens_per_second"] = r.tokens_per_second;
    nlohmann::json tensors = nlohmann::json::array();
    for (const TensorActivationStats& s : r.tensors) {
        std::vector<float> imp(static_cast<size_t>(s.n_cols), 0.0f);
        for (int64_t m = 0; m < s.n_mat; ++m)
            for (int64_t c = 0; c < s.n_cols; ++c)
                imp[static_cast<size_t>(c)] += s.importance[static_cast<size_t>(m * s.n_cols + c)] /
                                               static_cast<float>(s.n_mat);
        tensors.push_back({{"name", s.name},
                           {"layer", s.layer},
                           {"role", role_of(s.name)},
                           {"n_cols", s.n_cols},
                           {"n_mat", s.n_mat},
                           {"tokens", s.tokens},
                           {"channel_importance", rounded(imp)},
                           {"mean_abs", rounded(s.mean_abs)},
                           {"max_abs", rounded(s.max_abs)},
                           {"mean", s.mean},
                           {"variance", s.variance},
                           {"kurtosis", s.excess_kurtosis},
                           {"channel_kurtosis_median", s.channel_kurtosis_median},
                           {"channel_kurtosis_max", s.channel_kurtosis_max},
                           {"frac_beyond_6sigma", s.frac_beyond_6sigma},
                           {"max_abs_all", s.max_abs_all},
                           {"outlier_channels", s.outlier_channels}});
    }
    if (!r.weights.empty()) {
        std::map<std::string, size_t> entry;
        for (size_t i = 0; i < tensors.size(); ++i)
            entry.emplace(tensors[i]["name"].get<std::string>(), i);
        for (const WeightDiagnostics& d : r.weights) {
            auto it = entry.find(d.name);
            if (it != entry.end()) {
                tensors[it->second]["weight_hist"] = weight_hist_json(d);
                continue;
            }
            int layer = -1;
            if (std::sscanf(d.name.c_str(), "blk.%d.", &layer) != 1) layer = -1;
            tensors.push_back({{"name", d.name},
                               {"layer", layer},
                               {"role", role_of(d.name)},
                               {"weight_hist", weight_hist_json(d)}});
        }
    }
    j["tensors"] = std::move(tensors);
    nlohmann::json layers = nlohmann::json::array();
    for (const LayerHiddenStats& l : r.layers)
        layers.push_back({{"layer", l.layer},
                          {"max_abs", l.max_abs},
                          {"mean_abs", l.mean_abs},
                          {"max_mean_ratio", l.ratio()},
                          {"max_channel", l.max_channel}});
    j["layers"] = std::move(layers);
    return j;
}

void check_imatrix_for_model(const Imatrix& imatrix, const Model& model) {
    for (const ImatrixEntry& e : imatrix.entries()) {
        const TensorInfo* t = model.find(e.name);
        QL_CHECK(t != nullptr,
                 "{}: tensor '{}' is not in the model {} (an imatrix made for another model?)",
                 imatrix.path(), e.name, model.path());
        const int64_t n_per_row = t->n_per_row();
        const int64_t n_mat = t->ne.size() >= 3 ? t->ne[2] : 1;
        QL_CHECK(e.n_values == n_per_row * n_mat,
                 "{}: tensor '{}': the imatrix has {} values, the model's tensor takes {} ({} "
                 "columns x {} matrices; an imatrix made for another model?)",
                 imatrix.path(), e.name, e.n_values, n_per_row * n_mat, n_per_row, n_mat);
    }
}

}  // namespace quantlens
