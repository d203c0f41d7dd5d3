// `quantlens quantize MODEL (--recipe R | --preset P) [--imatrix F] -o OUT.gguf [--force]`:
// writes a mixed-precision GGUF and prints what each tensor became — requested type,
// written type and every fallback by name — then the total size and bits per weight.
#include <chrono>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "analysis/write/gptq_rounding.h"
#include "analysis/write/presets.h"
#include "analysis/write/quantize.h"
#include "cli/command.h"
#include "core/error.h"
#include "core/output_file.h"
#include "engine/engine.h"
#include "engine/tokenizer.h"
#include "formats/imatrix.h"
#include "formats/recipe.h"
#include "model/imatrix_coverage.h"
#include "model/model.h"
#include "model/names.h"

namespace quantlens::cli {
namespace {

struct QuantizeCliOptions {
    std::string model;
    std::string recipe;
    std::string preset;
    std::string imatrix;
    std::string output;
    std::string save_recipe;
    std::string gptq;
    int64_t gptq_chunks = 64;
    bool force = false;
    bool strict = false;
    bool allow_requantize = false;
    bool allow_other_model = false;
    bool no_f16 = false;
    bool gpu = false;
    bool quiet_table = false;
    bool json = false;
};

void print_json(const QuantizeResult& r) {
    nlohmann::json j;
    j["path"] = r.path;
    j["file_bytes"] = r.file_bytes;
    j["tensor_bytes"] = r.tensor_bytes;
    j["params"] = r.n_params;
    j["bpw"] = r.bpw;
    j["file_type"] = r.file_type;
    j["file_type_name"] = ftype_name(r.file_type);
    j["fallbacks"] = r.fallbacks;
    j["tensors"] = nlohmann::json::array();
    for (const auto& t : r.tensors)
        j["tensors"].push_back({{"name", t.name},
                                {"shape", t.ne},
                                {"quantized", t.quantized},
                                {"requested", ggml_type_display_name(t.requested)},
                                {"written", ggml_type_display_name(t.written)},
                                {"bytes", t.bytes},
                                {"imatrix", t.has_importance},
                                {"gptq", t.gptq},
                                {"rounding", t.rounding ? nlohmann::json(rounding_name(*t.rounding))
                                                        : nlohmann::json(nullptr)},
                                {"note", t.note}});
    fmt::print("{}\n", j.dump(2));
}

int run_quantize(const QuantizeCliOptions& o) {
    QL_CHECK(o.recipe.empty() != o.preset.empty(),
             "quantize: give exactly one of --recipe or --preset");
    QL_CHECK(!o.gpu || !o.gptq.empty(),
             "quantize --gpu: the GPU runs the model for the --gptq Hessians only; without "
             "--gptq there is nothing to run (drop --gpu)");
    QL_CHECK(!o.gpu || !o.no_f16,
             "quantize --gpu: the GPU engine holds F16 weights, so its Hessians are those of the "
             "F16-rounded model; drop --no-f16 or --gpu");
    check_output_path(o.output, overwrite_if(o.force));
    if (!o.save_recipe.empty()) check_output_path(o.save_recipe, overwrite_if(o.force));
    auto model = Model::open(o.model);
    std::unique_ptr<Imatrix> imatrix;
    if (!o.imatrix.empty())
        imatrix = std::make_unique<Imatrix>(load_imatrix_for(*model, o.imatrix));

    Recipe recipe = o.preset.empty() ? load_recipe(o.recipe)
                                     : preset_recipe(o.preset, *model, imatrix != nullptr);
    if (!o.save_recipe.empty()) {
        save_recipe(recipe, o.save_recipe, overwrite_if(o.force));
        fmt::print(stderr, "recipe written to {}\n", o.save_recipe);
    }

    // GPTQ needs the model's forward pass over the calibration text for its Hessians.
    std::unique_ptr<Engine> engine;
    std::unique_ptr<GptqRounding> gptq;
    if (!o.gptq.empty()) {
        const Tokenizer tokenizer = Tokenizer::load(*model);
        if (!o.json)
            fmt::print(stderr, "gptq: collecting input Hessians on {}{}\n", o.gptq,
                       o.gpu ? " (GPU)" : "");
        const GptqSettings settings{o.gptq, 512, o.gptq_chunks};
        const auto t0 = std::chrono::steady_clock::now();
        if (o.gpu) {
            gptq = GptqRounding::on_gpu(*model, tokenizer, settings, "quantize --gptq --gpu");
        } else {
            EngineOptions eo;
            eo.f16_weights = !o.no_f16;
            engine = std::make_unique<Engine>(*model, eo);
            gptq = std::make_unique<GptqRounding>(*engine, tokenizer, settings);
        }
        if (!o.json)
            fmt::print(
                stderr, "gptq: Hessians of {} tokens collected in {:.1f} s\n", gptq->n_tokens(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }

    QuantizeOptions opts;
    opts.gptq = gptq.get();
    opts.output_path = o.output;
    opts.force = o.force;
    opts.strict = o.strict;
    opts.allow_requantize = o.allow_requantize;
    opts.allow_other_model = o.allow_other_model;
    opts.imatrix = imatrix.get();
    opts.f16_intermediate = !o.no_f16;
    opts.progress = !o.json;
    QuantizeResult r = quantize_model(*model, recipe, opts);
    if (!o.preset.empty()) {
        // The preset already substituted llama.cpp's fallbacks (Recipe::notes name each
        // tensor); show them as quantize's own so none is silent.
        for (const std::string& n : recipe.notes) {
            const size_t colon = n.find(": ");
            if (colon == std::string::npos) continue;
            for (auto& t : r.tensors)
                if (t.name == n.substr(0, colon) && t.note.empty()) t.note = n.substr(colon + 2);
            r.fallbacks.push_back(n);
        }
    }
    if (o.json) {
        print_json(r);
        return 0;
    }

    if (!o.quiet_table) {
        fmt::print("{:<34} {:>18} {:>9} {:>9} {:>11}  {}\n", "tensor", "shape", "requested",
                   "written", "bytes", "note");
        for (const auto& t : r.tensors) {
            std::string note = t.note;
            if (t.has_importance) note += note.empty() ? "imatrix" : "; imatrix";
            if (t.gptq) note += note.empty() ? "gptq" : "; gptq";
            fmt::print("{:<34} {:>18} {:>9} {:>9} {:>11}  {}\n", t.name, format_shape(t.ne),
                       t.quantized ? ggml_type_display_name(t.requested) : "-",
                       ggml_type_display_name(t.written), t.bytes, note);
        }
    }
    if (!r.fallbacks.empty()) {
        fmt::print("\n{} tensor(s) could not take the requested type and fell back:\n",
                   r.fallbacks.size());
        for (const auto& f : r.fallbacks) fmt::print("  {}\n", f);
    }
    if (gptq) {
        std::vector<std::string> plain;
        int64_t n_gptq = 0;
        for (const auto& t : r.tensors) {
            if (t.gptq)
                ++n_gptq;
            else if (t.quantized && t.written != GgmlType::F32 && t.written != GgmlType::F16 &&
                     t.written != GgmlType::BF16)
                plain.push_back(t.name);
        }
        fmt::print(
            "\ngptq: {} tensor(s) rounded with GPTQ (Hessians of {} tokens); {} quantized "
            "plainly (no matmul input or type not covered){}{}\n",
            n_gptq, gptq->n_tokens(), plain.size(), plain.empty() ? "" : ": ",
            fmt::join(plain, ", "));
    }
    fmt::print(
        "\nwrote {}: {} tensors, {} bytes ({:.3f} MB), {} parameters, {:.2f} bpw, "
        "general.file_type {} ({})\n",
        r.path, r.tensors.size(), r.file_bytes, r.file_bytes / 1e6, r.n_params, r.bpw, r.file_type,
        ftype_name(r.file_type));
    return 0;
}

}  // namespace

QL_COMMAND(quantize, QuantizeCliOptions,
           "Write a mixed-precision GGUF from a recipe or a llama.cpp preset") {
    cmd.add_option("MODEL", o->model, "Hugging Face directory or GGUF file")->required();
    cmd.add_option("--recipe,-r", o->recipe, "Recipe (JSON or YAML): tensor → type");
    cmd.add_option("--preset,-p", o->preset,
                   "llama.cpp preset: Q4_K_M, Q6_K, Q8_0, IQ4_XS, Q3_K_M, Q2_K, ...");
    cmd.add_option("--imatrix", o->imatrix, "Importance matrix (llama.cpp .dat or GGUF)");
    cmd.add_option("--output,-o", o->output, "Output GGUF")->required();
    cmd.add_option("--save-recipe", o->save_recipe, "Also write the recipe used (JSON/YAML)");
    cmd.add_option("--gptq", o->gptq,
                   "Calibration text: round with GPTQ against the input Hessians of the model "
                   "on it (Q8_0, Q2_K-Q6_K, IQ4_XS; other types and token_embd plainly)");
    cmd.add_option("--gptq-chunks", o->gptq_chunks, kGptqChunksHelp)->capture_default_str();
    cmd.add_flag("--gpu", o->gpu, "Collect the --gptq Hessians on the GPU (CUDA build; F16)");
    cmd.add_flag("--force,-f", o->force, "Overwrite an existing output");
    cmd.add_flag("--strict", o->strict, "Refuse fallback types instead of reporting them");
    cmd.add_flag("--allow-requantize", o->allow_requantize,
                 "Convert tensors a GGUF source already holds quantized to another type");
    cmd.add_flag("--allow-other-model", o->allow_other_model,
                 "Use a recipe whose model hash names a different model");
    cmd.add_flag("--no-f16", o->no_f16,
                 "Quantize from the source floats, not from F16-rounded weights (HF sources)");
    cmd.add_flag("--summary", o->quiet_table, "Print only fallbacks and totals");
    cmd.add_flag("--json", o->json, "Print the per-tensor result as JSON on stdout");
    return [o] { return quantlens::cli::run_quantize(*o); };
}

}  // namespace quantlens::cli
