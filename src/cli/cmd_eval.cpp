// `quantlens eval MODEL --text FILE [--ctx 512] [--chunks N] [--base BASE] [--save-logits F]
// [--batch 4] [--as-f16] [--ggml-numerics] [--gpu] [--json]`: perplexity with llama-perplexity's
// chunking, and against a base (a model, or a log-prob file written by --save-logits) the
// KL-divergence statistics. Definitions live in analysis/measure/kld.h, the chunking in
// analysis/measure/eval.h.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "analysis/measure/eval.h"
#include "cli/command.h"
#include "cli/memory_report.h"
#include "cli/text_run_options.h"
#include "core/error.h"
#include "core/mmap_file.h"
#include "core/output_file.h"
#include "core/parallel.h"
#include "core/peak_memory.h"
#include "core/utf8.h"
#include "engine/engine.h"
#include "engine/tokenizer.h"
#include "model/model.h"

namespace quantlens::cli {
namespace {

struct EvalCliOptions : TextRunOptions {
    std::string model, text, base, save_logits;
    bool json = false, force = false;
};

bool is_logits_file(const std::string& path) {
    if (!std::filesystem::is_regular_file(path)) return false;
    std::ifstream in(path, std::ios::binary);
    char magic[6] = {};
    in.read(magic, 6);
    return in && std::memcmp(magic, "QLLOGP", 6) == 0;
}

std::unique_ptr<LogitsModel> make_engine(const Model& model, const EvalCliOptions& cli) {
    return make_logits_model(model, cli.engine_options(model), cli.gpu, "eval");
}

nlohmann::ordered_json to_json(const EvalResult& r, const EvalCliOptions& o) {
    nlohmann::ordered_json j;
    j["model"] = o.model;
    j["text"] = o.text;
    if (!o.base.empty()) j["base"] = o.base;
    j["n_ctx"] = r.n_ctx;
    j["n_chunks"] = r.n_chunks;
    j["tokens_scored"] = r.ppl.count;
    j["ppl"] = r.ppl.ppl;
    j["ppl_err"] = r.ppl.ppl_err;
    j["seconds"] = r.seconds;
    j["tokens_per_second"] = r.tokens_per_second;
    j["threads"] = num_threads();
    j["as_f16"] = o.as_f16;
    j["ggml_numerics"] = o.ggml_numerics;
    j["gpu"] = o.gpu;
    j["peak_rss_bytes"] = peak_rss_bytes();
    if (o.gpu) j["peak_gpu_bytes"] = peak_gpu_bytes();
    if (r.kld) {
        const KldStats& k = *r.kld;
        j["kld"] = {{"mean", k.kld_mean}, {"err", k.kld_err}, {"median", k.kld_median},
                    {"p90", k.kld_p90},   {"p99", k.kld_p99}, {"p99_9", k.kld_p999},
                    {"max", k.kld_max}};
        j["ppl_base"] = k.ppl_base;
        j["ppl_base_err"] = k.ppl_base_err;
        j["ln_ppl_ratio"] = k.ln_ppl_ratio;
        j["ln_ppl_ratio_err"] = k.ln_ppl_ratio_err;
        j["same_top1_pct"] = 100.0 * k.same_top;
        j["same_top1_pct_err"] = 100.0 * k.same_top_err;
        j["rms_dp_pct"] = 100.0 * k.rms_dp;
        j["rms_dp_pct_err"] = 100.0 * k.rms_dp_err;
        j["base_seconds"] = r.base_seconds;
    }
    return j;
}

void print_text(const EvalResult& r, const EvalCliOptions& o) {
    fmt::print("{}: {} chunks of {} tokens, {} scored (second half of each chunk)\n", o.model,
               r.n_chunks, r.n_ctx, r.ppl.count);
    fmt::print("PPL                  : {:.4f} ± {:.4f}\n", r.ppl.ppl, r.ppl.ppl_err);
    fmt::print("speed                : {:.0f} tokens/s ({:.2f} s, {} threads)\n",
               r.tokens_per_second, r.seconds, num_threads());
    fmt::print("peak memory          : {}\n", peak_memory_text());
    if (!r.kld) return;
    const KldStats& k = *r.kld;
    fmt::print("PPL(base)            : {:.4f} ± {:.4f}\n", k.ppl_base, k.ppl_base_err);
    fmt::print("ln(PPL(Q)/PPL(base)) : {:.6f} ± {:.6f}\n", k.ln_ppl_ratio, k.ln_ppl_ratio_err);
    fmt::print("mean KLD             : {:.6f} ± {:.6f}\n", k.kld_mean, k.kld_err);
    fmt::print("median / p90 / p99 / p99.9 / max KLD: {:.6f} / {:.6f} / {:.6f} / {:.6f} / {:.6f}\n",
               k.kld_median, k.kld_p90, k.kld_p99, k.kld_p999, k.kld_max);
    fmt::print("same top-1           : {:.3f} ± {:.3f} %\n", 100 * k.same_top,
               100 * k.same_top_err);
    fmt::print("RMS Δp               : {:.3f} ± {:.3f} %\n", 100 * k.rms_dp, 100 * k.rms_dp_err);
}

int run_eval(const EvalCliOptions& o) {
    const std::unique_ptr<Model> model = Model::open(o.model);
    const Tokenizer tokenizer = Tokenizer::load(*model);
    EvalOptions eo;
    eo.save_logits_overwrite = overwrite_if(o.force);
    if (!o.save_logits.empty()) check_output_path(o.save_logits, eo.save_logits_overwrite);
    eo.n_ctx = o.ctx;
    eo.max_chunks = o.chunks;
    eo.batch = o.batch;
    const EvalTokens chunks = make_eval_tokens(tokenizer, read_utf8_text_file(o.text), o.text, eo);
    const std::unique_ptr<LogitsModel> engine = make_engine(*model, o);

    std::unique_ptr<Model> base_model;
    std::unique_ptr<LogitsModel> base_engine;
    std::unique_ptr<LogitsFile> base_logits;
    EvalBase base;
    if (!o.base.empty()) {
        if (is_logits_file(o.base)) {
            base_logits = std::make_unique<LogitsFile>(o.base);
            base.logits = base_logits.get();
        } else {
            base_model = Model::open(o.base);
            base_engine = make_engine(*base_model, o);
            base.engine = base_engine.get();
        }
    }
    const EvalResult r = evaluate(*engine, chunks, eo, base, o.save_logits);
    if (o.json) {
        fmt::print("{}\n", to_json(r, o).dump(2));
    } else {
        print_text(r, o);
    }
    return 0;
}

}  // namespace

QL_COMMAND(eval, EvalCliOptions, "Perplexity and KL divergence (llama-perplexity conventions)") {
    cmd.add_option("MODEL", o->model, "Hugging Face directory or .gguf file")->required();
    cmd.add_option("--text", o->text, "Evaluation text (UTF-8)")->required();
    cmd.add_option("--ctx", o->ctx, "Context (chunk) length")->capture_default_str();
    cmd.add_option("--chunks", o->chunks, "Number of chunks (default: all)");
    cmd.add_option("--base", o->base,
                   "Base for KL divergence: a model, or a log-prob file from --save-logits");
    cmd.add_option("--save-logits", o->save_logits,
                   "Write this model's log-probs at the scored positions (a base for later runs)");
    cmd.add_flag("--force,-f", o->force, "Overwrite an existing --save-logits file");
    cmd.add_option("--batch", o->batch, "Chunks per forward pass")->capture_default_str();
    cmd.add_flag("--as-f16", o->as_f16,
                 "Round Hugging Face weights to F16 first (as an F16 GGUF conversion does)");
    cmd.add_flag("--ggml-numerics", o->ggml_numerics,
                 "Emulate llama.cpp's CPU rounding (8-bit activations for quantized weights, "
                 "F16 KV cache) to compare with llama-perplexity figures");
    cmd.add_flag("--gpu", o->gpu, "Run the model on the GPU (CUDA build; F16 weights)");
    cmd.add_flag("--json", o->json, "Print one JSON object");
    return [o] { return quantlens::cli::run_eval(*o); };
}

}  // namespace quantlens::cli
