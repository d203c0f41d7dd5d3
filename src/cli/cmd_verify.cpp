// `quantlens verify [OUT.gguf...] --base MODEL --text FILE [--recipe R]... [--presets LIST]`:
// measured size, PPL and KLD of recipes and files beside llama.cpp's uniform presets written
// by our quantizers (analysis/studies/verify.h). --job stores the table in a sweep job for the
// report.
#include <fmt/format.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "analysis/studies/gptq_verify.h"
#include "analysis/studies/verify.h"
#include "analysis/write/gptq_rounding.h"
#include "cli/command.h"
#include "cli/memory_report.h"
#include "core/error.h"
#include "core/output_file.h"
#include "core/peak_memory.h"
#include "jobs/store.h"

namespace quantlens::cli {
namespace {

struct VerifyArgs {
    std::vector<std::string> files, recipes;
    std::string presets = "Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q3_K_M,Q2_K,IQ4_XS";
    std::string json_out, store, format = "ggml";
    int64_t job = 0;
    VerifyOptions opt;
    bool no_ggml_numerics = false;
    bool force = false;
    std::string llama_cpp_dir;
    CLI::Option* llama_cpp = nullptr;  // given (with or without DIR)?
};

// verify --format gptq (analysis/studies/gptq_verify.h): GPTQ recipes by fake quantization.
nlohmann::json run_gptq_verify_command(const VerifyArgs& a) {
    QL_CHECK(a.job == 0,
             "verify --format gptq: --job is not supported (the report reads ggml verify tables); "
             "use --json FILE");
    QL_CHECK(a.files.empty() && a.opt.imatrix.empty(),
             "verify --format gptq: measures GPTQ recipes (--recipe); GGUF files and --imatrix "
             "belong to --format ggml");
    QL_CHECK(!a.opt.gpu,
             "verify --format gptq: --gpu is not supported (GPTQ recipes are "
             "fake-quantized and evaluated on the CPU)");
    GptqVerifyOptions g;
    g.base_model = a.opt.base_model;
    g.text = a.opt.text;
    g.out_dir = a.opt.out_dir;
    g.ctx = a.opt.ctx;
    g.chunks = a.opt.chunks;
    g.gptq_text = a.opt.gptq_text;
    g.gptq_chunks = a.opt.gptq_chunks;
    g.store = a.store;
    g.allow_overlap = a.opt.allow_overlap;
    g.baselines = a.presets != "none";
    const GptqVerifyReport rep = run_gptq_verify(g, a.recipes);
    fmt::print("{}", gptq_verify_table(rep));
    return gptq_verify_json(rep);
}

int run_verify_command(VerifyArgs& a) {
    if (!a.json_out.empty()) check_output_path(a.json_out, overwrite_if(a.force));
    QL_CHECK(!a.opt.base_model.empty() && !a.opt.text.empty(),
             "verify: --base MODEL and --text FILE are required");
    QL_CHECK(a.format == "ggml" || a.format == "gptq",
             "verify: --format must be ggml or gptq, not '{}'", a.format);
    const bool llama_cpp = a.llama_cpp && a.llama_cpp->count() > 0;
    if (llama_cpp) a.opt.llama_cpp_dir = a.llama_cpp_dir;
    QL_CHECK(!llama_cpp || a.format == "ggml",
             "verify --format gptq: --llama-cpp needs GGUF files (GPTQ recipes are "
             "fake-quantized, never written as GGUF)");
    if (a.format == "gptq") {
        const nlohmann::json j = run_gptq_verify_command(a);
        if (!a.json_out.empty())
            write_output_file(a.json_out, j.dump(1) + "\n", overwrite_if(a.force));
        return 0;
    }
    a.opt.ggml_numerics = !a.no_ggml_numerics;
    a.opt.store = a.store;  // where the recipes' sweep jobs are (held-out check)
    std::vector<VerifyCandidate> cands;
    for (const auto& f : a.files)
        cands.push_back({std::filesystem::path(f).stem().string(), f, "", ""});
    for (const auto& r : a.recipes)
        cands.push_back({std::filesystem::path(r).stem().string(), "", r, ""});
    if (a.presets != "none") {
        std::stringstream ss(a.presets);
        std::string p;
        while (std::getline(ss, p, ','))
            if (!p.empty()) cands.push_back({p, "", "", p});
    }
    const VerifyReport rep = run_verify(a.opt, cands);
    fmt::print("{}", verify_table(rep));
    fmt::print("verify: peak memory {}\n", peak_memory_text());
    const nlohmann::json j = verify_json(rep);
    if (!a.json_out.empty()) {
        write_output_file(a.json_out, j.dump(1) + "\n", overwrite_if(a.force));
    }
    if (a.job > 0) {
        jobs::Store store(jobs::resolve_store_path(a.store));
        // Recipes verified earlier on the same text stay in the job's table beside this run's.
        const auto earlier = store.get_artifact(a.job, "verify");
        const nlohmann::json kept =
            earlier && earlier->is_json
                ? merge_verify_tables(nlohmann::json::parse(earlier->data, nullptr, false), j)
                : j;
        store.put_artifact(a.job, {"verify", true, kept.dump()});
        fmt::print("verify: stored in job {} (quantlens report {})\n", a.job, a.job);
    }
    return 0;
}

}  // namespace

QL_COMMAND(verify, VerifyArgs,
           "Measure recipes and GGUF files against the base and llama.cpp's uniform presets") {
    cmd.add_option("FILES", o->files, "Quantized GGUF files to verify");
    cmd.add_option("--base", o->opt.base_model, "Full-precision model (HF directory or GGUF)");
    cmd.add_option("--text", o->opt.text, "Evaluation text");
    cmd.add_option("--recipe", o->recipes, "Recipe(s) to quantize and verify");
    cmd.add_option("--presets", o->presets,
                   "Comma-separated llama.cpp presets to compare ('none' to skip)")
        ->capture_default_str();
    cmd.add_option("--imatrix", o->opt.imatrix, "Importance matrix used when quantizing");
    cmd.add_option("--gptq", o->opt.gptq_text,
                   "Calibration text: write the --recipe files with GPTQ rounding (as "
                   "`quantize --gptq`); presets stay llama.cpp's");
    cmd.add_option("--gptq-chunks", o->opt.gptq_chunks, kGptqChunksHelp)->capture_default_str();
    cmd.add_option("--format", o->format,
                   "ggml | gptq: fake-quantize GPTQ recipes as their checkpoint decodes, beside "
                   "uniform gptq4g128 and gptq8g128 ('--presets none' drops those)")
        ->capture_default_str();
    cmd.add_option("--out-dir", o->opt.out_dir, "Where quantized candidates are written")
        ->capture_default_str();
    cmd.add_option("--ctx", o->opt.ctx, "Chunk length")->capture_default_str();
    cmd.add_option("--chunks", o->opt.chunks, "Chunks of the text (100 = llama.cpp's reference)")
        ->capture_default_str();
    cmd.add_flag("--no-ggml-numerics", o->no_ggml_numerics,
                 "Pure f32 compute instead of llama.cpp's CPU arithmetic");
    cmd.add_flag("--gpu", o->opt.gpu,
                 "Evaluate on the GPU (CUDA build; llama.cpp's numerics in F32, or F16 with "
                 "--no-ggml-numerics)");
    cmd.add_option("--json", o->json_out, "Write the table as JSON");
    cmd.add_flag("--force,-f", o->force, "Overwrite an existing --json file");
    cmd.add_option("--job", o->job, "Store the table in this sweep job (for the report)");
    add_store_option(cmd, o->store, "of --job and of the recipes' sweep jobs");
    o->llama_cpp = cmd.add_option("--llama-cpp", o->llama_cpp_dir,
                                  "Also run llama.cpp's llama-perplexity (on PATH, or in DIR, "
                                  "DIR/bin, DIR/build/bin) on every candidate, KLD against the "
                                  "base's logits on the same windows, beside our figures")
                       ->expected(0, 1);
    cmd.add_flag("--allow-overlap", o->opt.allow_overlap,
                 "Verify a recipe on text that shares windows with its sweep's text (warns "
                 "instead of refusing)");
    return [o] { return quantlens::cli::run_verify_command(*o); };
}

}  // namespace quantlens::cli
