// `quantlens calibrate MODEL --text FILE [--ctx 512] [--chunks N] [-o OUT.dat|OUT.gguf]
// [--store S] [--as-f16] [--ggml-numerics] [--gpu] [--json]`: the importance matrix (llama-imatrix
// chunking and values, analysis/studies/calibrate.h) and activation statistics; the imatrix is
// written in llama.cpp's legacy or GGUF format, the statistics stored as the artifact
// "calibration" of a calibrate job when a store is given, with every quantizable weight's
// histogram (the report's ±3σ view).
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "analysis/studies/calibrate.h"
#include "cli/command.h"
#include "cli/memory_report.h"
#include "cli/text_run_options.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/mmap_file.h"
#include "core/output_file.h"
#include "core/utf8.h"
#include "engine/engine.h"
#include "jobs/runner.h"
#include "jobs/store.h"
#include "model/model.h"

namespace quantlens::cli {
namespace {

struct CalibrateCliOptions : TextRunOptions {
    std::string model, text, output, store;
    bool json = false, force = false;

    nlohmann::json to_json() const {
        return {{"model", model},   {"text", text},
                {"output", output}, {"ctx", ctx},
                {"chunks", chunks}, {"batch", batch},
                {"as_f16", as_f16}, {"ggml_numerics", ggml_numerics},
                {"gpu", gpu},       {"force", force}};
    }
    static CalibrateCliOptions from_json(const nlohmann::json& j) {
        CalibrateCliOptions o;
        o.model = j.at("model");
        o.text = j.at("text");
        o.output = j.value("output", "");
        o.ctx = j.value("ctx", int64_t{512});
        o.chunks = j.value("chunks", int64_t{0});
        o.batch = j.value("batch", int64_t{4});
        o.as_f16 = j.value("as_f16", false);
        o.ggml_numerics = j.value("ggml_numerics", false);
        o.gpu = j.value("gpu", false);
        o.force = j.value("force", false);
        return o;
    }
};

void print_summary(const CalibrationResult& r, const CalibrateCliOptions& o) {
    fmt::print("{}: {} chunks of {} tokens ({} tokens) in {:.2f} s, {:.0f} tokens/s\n", o.model,
               r.n_chunks, r.n_ctx, r.n_tokens, r.seconds, r.tokens_per_second);
    fmt::print("{:<28} {:>6} {:>10} {:>10} {:>9} {:>9} {:>10} {:>8}\n", "tensor input", "cols",
               "mean x²", "max|x|", "kurtosis", "ch.kurt", "beyond6σ", "outliers");
    for (const TensorActivationStats& s : r.tensors) {
        double imp = 0;
        for (float v : s.importance) imp += v;
        imp /= static_cast<double>(std::max<size_t>(s.importance.size(), 1));
        fmt::print("{:<28} {:>6} {:>10.4g} {:>10.4g} {:>9.2f} {:>9.2f} {:>9.4f}% {:>8}\n", s.name,
                   s.n_cols, imp, s.max_abs_all, s.excess_kurtosis, s.channel_kurtosis_max,
                   100 * s.frac_beyond_6sigma, s.outlier_channels.size());
    }
    fmt::print("hidden state max|h| / mean|h| per layer:");
    for (const LayerHiddenStats& l : r.layers) fmt::print(" {}:{:.1f}", l.layer, l.ratio());
    fmt::print("\n");
}

// with_weights: the weight histograms too (the report's ±3σ view); only what is stored or
// printed as JSON needs them.
CalibrationResult calibrate_once(const CalibrateCliOptions& o, const CalibrateObserver& observer,
                                 bool with_weights) {
    const std::unique_ptr<Model> model = Model::open(o.model);
    const EngineOptions eo = o.engine_options(*model);
    CalibrateOptions co;
    co.n_ctx = o.ctx;
    co.max_chunks = o.chunks;
    co.batch = o.batch;
    std::unique_ptr<Engine> engine;  // the CPU run's; the GPU run holds no f32 copy
    CalibrationResult r;
    if (o.gpu) {
        QL_CHECK(!o.ggml_numerics,
                 "calibrate --gpu: llama.cpp's matmul-input rounding (--ggml-numerics) is not "
                 "implemented on the GPU; calibrate without it on the GPU, or with it on the CPU");
        r = calibrate_text_gpu(*model, o.text, co, observer);
    } else {
        engine = std::make_unique<Engine>(*model, eo);
        r = calibrate_text(*engine, o.text, co, observer);
    }
    QL_CHECK(!r.imatrix.empty(), "{}: the model has no blk.* linear layers to calibrate", o.model);
    if (!o.output.empty()) {
        ImatrixWriteInfo info = imatrix_write_info(r);
        info.overwrite = overwrite_if(o.force);
        write_imatrix(o.output, r.imatrix, info);
    }
    if (with_weights)
        r.weights = engine ? weight_histograms(*engine) : weight_histograms(*model, eo.f16_weights);
    return r;
}

// The job body: run, store the artifact; false when stopped early by a pause request.
bool run_calibrate_job(jobs::Store& store, int64_t id, CalibrationResult* out) {
    const jobs::Job job = store.get_job(id);
    const CalibrateCliOptions o = CalibrateCliOptions::from_json(nlohmann::json::parse(job.params));
    bool stopped = false;
    CalibrationResult r = calibrate_once(
        o,
        [&](int64_t done, int64_t total) {
            store.update_progress(id, done, total, fmt::format("chunk {}/{}", done, total));
            stopped = store.should_stop(id);
            return !stopped;
        },
        true);
    if (stopped) return false;  // a partial imatrix is not stored; resume starts over
    store.put_artifact(id, {"calibration", true, calibration_json(r, o.model).dump()});
    if (out) *out = std::move(r);
    return true;
}

int run_calibrate(const CalibrateCliOptions& o, const std::string& command_line) {
    QL_CHECK(!o.output.empty() || !o.store.empty(),
             "calibrate: give -o OUT (.dat or .gguf imatrix) and/or --store");
    if (!o.output.empty()) check_output_path(o.output, overwrite_if(o.force));
    CalibrationResult r;
    if (o.store.empty()) {
        r = calibrate_once(o, {}, o.json);
    } else {
        jobs::Store store(jobs::resolve_store_path(o.store));
        const std::unique_ptr<Model> model = Model::open(o.model);
        jobs::NewJob nj;
        nj.kind = jobs::JobKind::calibrate;
        nj.params = o.to_json().dump();
        nj.model = o.model;
        nj.model_hash = model->content_hash();
        nj.text_hash = hash_string(read_utf8_text_file(o.text));
        nj.command = command_line;
        const int64_t id = store.create_job(nj);
        fmt::print(stderr, "calibrate: job {} in {}\n", id, store.path());
        store.start(id);
        const jobs::JobState s =
            jobs::run_job(store, id, [&] { return run_calibrate_job(store, id, &r); });
        if (s != jobs::JobState::done) {
            fmt::print(stderr, "calibrate: job {} is {}\n", id, jobs::state_name(s));
            return jobs::job_exit_code(s);
        }
    }
    if (o.json) {
        fmt::print("{}\n", calibration_json(r, o.model).dump());
    } else {
        print_summary(r, o);
        if (!o.output.empty()) fmt::print("imatrix written to {}\n", o.output);
    }
    fmt::print(stderr, "calibrate: peak memory {}\n", peak_memory_text());
    return 0;
}

}  // namespace

QL_COMMAND(calibrate, CalibrateCliOptions,
           "Importance matrix (llama.cpp imatrix) and activation statistics") {
    using namespace quantlens;
    jobs::register_job_kind(jobs::JobKind::calibrate, [](jobs::Store& store, int64_t id) {
        return cli::run_calibrate_job(store, id, nullptr);
    });
    cmd.add_option("MODEL", o->model, "Hugging Face directory or .gguf file")->required();
    cmd.add_option("--text", o->text, "Calibration text (UTF-8)")->required();
    cmd.add_option("--ctx", o->ctx, "Chunk length in tokens")->capture_default_str();
    cmd.add_option("--chunks", o->chunks, "Number of chunks (default: all)");
    cmd.add_option("-o,--output", o->output, "imatrix to write: .gguf (GGUF) or legacy .dat");
    cmd.add_flag("--force,-f", o->force, "Overwrite an existing -o file");
    cmd.add_option("--batch", o->batch, "Chunks per forward pass")->capture_default_str();
    cmd.add_option("--store", o->store, "Job store: record a calibrate job with its statistics");
    cmd.add_flag("--as-f16", o->as_f16,
                 "Round Hugging Face weights to F16 first (as llama.cpp's F16 conversion)");
    cmd.add_flag("--ggml-numerics", o->ggml_numerics, "Emulate llama.cpp's CPU rounding");
    cmd.add_flag("--gpu", o->gpu, "Run the model on the GPU (CUDA build; F16 weights)");
    cmd.add_flag("--json", o->json, "Print the statistics as one JSON object");
    return [o] { return cli::run_calibrate(*o, cli::invocation_line()); };
}

}  // namespace quantlens::cli
