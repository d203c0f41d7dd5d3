#include "analysis/studies/verify.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include <fmt/format.h>

#include "analysis/measure/eval.h"
#include "analysis/write/gptq_rounding.h"
#include "analysis/write/presets.h"
#include "analysis/write/quantize.h"
#include "core/error.h"
#include "core/ggml_type.h"
#include "core/hash.h"
#include "core/mmap_file.h"
#include "core/output_file.h"
#include "core/utf8.h"
#include "engine/engine.h"
#include "engine/tokenizer.h"
#include "formats/imatrix.h"
#include "formats/recipe.h"
#include "model/imatrix_coverage.h"
#include "model/model.h"

namespace quantlens {
namespace fs = std::filesystem;

namespace {

std::string safe_file_name(std::string s) {
    for (char& c : s)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
            c = '_';
    return s;
}

std::string read_key(const std::string& path) {
    std::ifstream f(path);
    std::string key;
    std::getline(f, key);
    return key;
}

// verify --llama-cpp: the base as a GGUF (the file itself, or F16 written by our quantizer,
// reused while its key matches), llama-perplexity's base logits, then every candidate.
void run_llama_cpp(const VerifyOptions& o, const Model& base_model, const std::string& tool,
                   VerifyReport& report, std::vector<VerifyRow>& rows) {
    std::string base_gguf = o.base_model;
    if (!(fs::is_regular_file(o.base_model) && fs::path(o.base_model).extension() == ".gguf")) {
        base_gguf = (fs::path(o.out_dir) / "llama-cpp-base-F16.gguf").string();
        const std::string key_path = base_gguf + ".key", key = hash_string("F16\n" + o.base_model);
        if (!(o.reuse_files && fs::exists(base_gguf) && read_key(key_path) == key)) {
            fs::remove(key_path);
            QuantizeOptions qo;
            qo.output_path = base_gguf;
            qo.force = true;
            qo.progress = false;
            quantize_model(base_model, preset_recipe("F16", base_model, false), qo);
            write_output_file(key_path, key, Overwrite::replace);
        }
    }
    LlamaCppCheck check(tool, o.out_dir, o.ctx, o.chunks);
    fmt::print(stderr, "verify --llama-cpp: {} on {}\n", tool, base_gguf);
    check.run_base(base_gguf, o.text);
    for (auto& row : rows) {
        fmt::print(stderr, "verify --llama-cpp: {} ({})\n", row.name, row.path);
        row.llama_cpp = check.run_candidate(row.path, safe_file_name(row.name));
    }
    report.llama_cpp_tool = tool;
    report.llama_cpp_base = base_gguf;
}

// The llama.cpp block under verify's table: its figures beside ours, same files and windows.
std::string llama_cpp_lines(const VerifyReport& rep) {
    if (rep.llama_cpp_tool.empty()) return "";
    std::string out = fmt::format("llama.cpp ({}, against {}; same windows):\n", rep.llama_cpp_tool,
                                  rep.llama_cpp_base);
    out += fmt::format("{:<22} {:>9} {:>10} {:>9} {:>9} {:>8} {:>12}\n", "name", "PPL", "mean KLD",
                       "KLD p99", "p99.9", "top-1 %", "KLD vs ours");
    for (const auto& r : rep.rows) {
        if (!r.llama_cpp) continue;
        const LlamaCppFigures& l = *r.llama_cpp;
        out += fmt::format("{:<22} {:>9.3f} {:>10.6f} {:>9.5f} {:>9.5f} {:>8.2f} {:>+11.2f}%\n",
                           r.name, l.ppl, l.kld_mean, l.kld_p99, l.kld_p999, 100 * l.top1,
                           r.kld_mean > 0 ? 100 * (l.kld_mean / r.kld_mean - 1) : 0.0);
    }
    return out;
}

}  // namespace

VerifyReport run_verify(const VerifyOptions& o, const std::vector<VerifyCandidate>& candidates) {
    QL_CHECK(!candidates.empty(),
             "verify: nothing to verify (give GGUF files, --recipe or --presets)");
    // The second opinion is refused before any work when its tool is missing.
    std::optional<std::string> llama_tool;
    if (o.llama_cpp_dir) {
        llama_tool = find_llama_perplexity(*o.llama_cpp_dir);
        QL_CHECK(
            llama_tool.has_value(),
            "verify --llama-cpp: llama-perplexity is {}; build llama.cpp's llama-perplexity "
            "target and put it on PATH or give its folder (--llama-cpp DIR)",
            o.llama_cpp_dir->empty()
                ? std::string("not on PATH")
                : fmt::format("not in {} (looked in it, bin/ and build/bin/)", *o.llama_cpp_dir));
    }
    fs::create_directories(o.out_dir);
    auto base_model = Model::open(o.base_model);
    HeldOut held_out = check_held_out(o, candidates, *base_model);  // before any long work
    std::optional<Imatrix> imatrix;
    if (!o.imatrix.empty()) imatrix = load_imatrix_for(*base_model, o.imatrix);

    // 1. Write every candidate file first, so a bad recipe fails before long evaluations.
    std::unique_ptr<Engine> gptq_engine;
    std::unique_ptr<GptqRounding> gptq;
    auto gptq_rounding = [&]() -> const GptqRounding* {
        if (o.gptq_text.empty()) return nullptr;
        if (!gptq && o.gpu) {
            gptq = GptqRounding::on_gpu(*base_model, Tokenizer::load(*base_model),
                                        GptqSettings{o.gptq_text, 512, o.gptq_chunks},
                                        "verify --gptq --gpu");
        } else if (!gptq) {
            EngineOptions geo;
            geo.f16_weights = true;
            gptq_engine = std::make_unique<Engine>(*base_model, geo);
            gptq = std::make_unique<GptqRounding>(*gptq_engine, Tokenizer::load(*base_model),
                                                  GptqSettings{o.gptq_text, 512, o.gptq_chunks});
            gptq_engine.reset();  // the Hessians are collected; the f32 weights can go
        }
        return gptq.get();
    };
    std::vector<VerifyRow> rows;
    for (const auto& c : candidates) {
        VerifyRow row;
        row.name = c.name;
        if (!c.gguf.empty()) {
            row.path = c.gguf;
        } else {
            Recipe recipe = !c.recipe.empty()
                                ? load_recipe(c.recipe)
                                : preset_recipe(c.preset, *base_model, imatrix.has_value());
            if (!c.recipe.empty() && recipe.predicted_kld > 0)
                row.predicted_kld = recipe.predicted_kld;
            if (!c.recipe.empty() && std::isfinite(recipe.predicted_kld_p99))
                row.predicted_kld_p99 = recipe.predicted_kld_p99;
            if (!c.recipe.empty() && std::isfinite(recipe.predicted_kld_p999))
                row.predicted_kld_p999 = recipe.predicted_kld_p999;
            row.path = (fs::path(o.out_dir) / (safe_file_name(c.name) + ".gguf")).string();
            // A file is reused only when it was written from the same inputs: its key (what
            // went into it) sits beside it, so a changed recipe of the same name is rewritten.
            const std::string key_path = row.path + ".key";
            const std::string key =
                hash_string(recipe_to_json(recipe) + "\n" + o.base_model + "\n" + o.imatrix + "\n" +
                            (c.recipe.empty() ? std::string()
                                              : o.gptq_text + ":" + std::to_string(o.gptq_chunks)));
            if (!(o.reuse_files && fs::exists(row.path) && read_key(key_path) == key)) {
                fs::remove(key_path);
                QuantizeOptions qo;
                qo.output_path = row.path;
                qo.force = true;
                qo.imatrix = imatrix ? &*imatrix : nullptr;
                if (!c.recipe.empty()) qo.gptq = gptq_rounding();
                const QuantizeResult qr = quantize_model(*base_model, recipe, qo);
                for (const auto& f : qr.fallbacks)
                    fmt::print(stderr, "verify: {}: {}\n", c.name, f);
                write_output_file(key_path, key, Overwrite::replace);
            }
        }
        rows.push_back(row);
    }

    // 2. The base once, its log-probabilities saved for every comparison.
    EngineOptions eo;
    eo.f16_weights = true;
    eo.ggml_numerics = o.ggml_numerics;
    Tokenizer tokenizer = Tokenizer::load(*base_model);
    EvalOptions ev;
    ev.n_ctx = o.ctx;
    ev.max_chunks = o.chunks;
    ev.save_logits_overwrite = Overwrite::replace;  // out_dir is verify's own working folder
    const EvalTokens chunks = make_eval_tokens(tokenizer, read_utf8_text_file(o.text), o.text, ev);
    const std::string base_logits = (fs::path(o.out_dir) / "base.qllogp").string();
    VerifyReport report;
    {
        const auto base = make_logits_model(*base_model, eo, o.gpu, "verify");
        fmt::print(stderr, "verify: base {} over {} tokens\n", o.base_model,
                   chunks.n_chunks * chunks.n_ctx);
        const EvalResult r = evaluate(*base, chunks, ev, {}, base_logits);
        report.base_ppl = r.ppl.ppl;
        report.n_tokens = chunks.n_chunks * chunks.n_ctx;
    }
    const LogitsFile base_file(base_logits);

    // 3. Each candidate against the base.
    int64_t n_params = 0;
    for (const auto& t : base_model->tensors()) n_params += t.n_elements();
    for (auto& row : rows) {
        auto model = Model::open(row.path);
        QL_CHECK(model->config().n_layers == base_model->config().n_layers &&
                     model->config().hidden == base_model->config().hidden,
                 "verify: {} is not a quantization of {} (different shapes)", row.path,
                 o.base_model);
        EngineOptions qo = eo;
        qo.f16_weights = false;
        const auto engine = make_logits_model(*model, qo, o.gpu, "verify");
        fmt::print(stderr, "verify: {} ({})\n", row.name, row.path);
        const auto t0 = std::chrono::steady_clock::now();
        const EvalResult r = evaluate(*engine, chunks, ev, {nullptr, &base_file});
        row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        row.size_bytes = fs::file_size(row.path);
        row.bpw =
            bits_per_weight(static_cast<double>(row.size_bytes), static_cast<double>(n_params));
        QL_ASSERT(r.kld.has_value());
        set_eval_figures(row, r);
        row.ppl_err = r.ppl.ppl_err;
    }
    if (llama_tool) run_llama_cpp(o, *base_model, *llama_tool, report, rows);
    report.rows = std::move(rows);
    report.held_out = std::move(held_out);
    report.held_out.verify_windows = chunks.n_chunks;
    return report;
}

std::string verify_table(const VerifyReport& rep) {
    std::string out = fmt::format("base PPL {:.3f} over {} tokens\n", rep.base_ppl, rep.n_tokens);
    out += held_out_lines(rep.held_out);
    out += fmt::format(
        "{:<22} {:>10} {:>6} {:>9} {:>10} {:>10} {:>9} {:>9} {:>8} {:>7} {:>11} {:>10} {:>10}\n",
        "name", "MB", "bpw", "PPL", "mean KLD", "median", "KLD p99", "p99.9", "top-1 %", "RMS Δp",
        "predicted", "pred. p99", "pred. p99.9");
    const auto optional = [](const std::optional<double>& v, int digits) {
        return v ? fmt::format("{:.{}f}", *v, digits) : std::string("-");
    };
    for (const auto& r : rep.rows)
        out += fmt::format(
            "{:<22} {:>10.3f} {:>6.2f} {:>9.3f} {:>10.6f} {:>10.6f} {:>9.5f} "
            "{:>9.5f} {:>8.2f} {:>6.2f}% {:>11} {:>10} {:>10}\n",
            r.name, r.size_bytes / 1e6, r.bpw, r.ppl, r.kld_mean, r.kld_median, r.kld_p99,
            r.kld_p999, 100 * r.top1, 100 * r.rms_dp, optional(r.predicted_kld, 6),
            optional(r.predicted_kld_p99, 5), optional(r.predicted_kld_p999, 5));
    out += llama_cpp_lines(rep);
    return out;
}

nlohmann::json verify_json(const VerifyReport& rep) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& r : rep.rows) {
        nlohmann::json j = {
            {"name", r.name},         {"path", r.path},         {"size_bytes", r.size_bytes},
            {"bpw", r.bpw},           {"ppl", r.ppl},           {"ppl_err", r.ppl_err},
            {"kld_mean", r.kld_mean}, {"kld_err", r.kld_err},   {"kld_median", r.kld_median},
            {"kld_p99", r.kld_p99},   {"kld_p999", r.kld_p999}, {"kld_max", r.kld_max},
            {"top1", r.top1},         {"rms_dp", r.rms_dp},     {"seconds", r.seconds}};
        const auto optional = [](const std::optional<double>& v) {
            return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
        };
        j["predicted_kld"] = optional(r.predicted_kld);
        j["predicted_kld_p99"] = optional(r.predicted_kld_p99);
        j["predicted_kld_p999"] = optional(r.predicted_kld_p999);
        if (r.llama_cpp) j["llama_cpp"] = llama_cpp_json(*r.llama_cpp);
        rows.push_back(j);
    }
    nlohmann::json out = {{"base_ppl", rep.base_ppl},
                          {"n_tokens", rep.n_tokens},
                          {"rows", rows},
                          {"held_out", held_out_json(rep.held_out)}};
    if (!rep.llama_cpp_tool.empty())
        out["llama_cpp"] = {{"tool", rep.llama_cpp_tool}, {"base", rep.llama_cpp_base}};
    return out;
}

nlohmann::json merge_verify_tables(const nlohmann::json& earlier, const nlohmann::json& now) {
    auto same_text = [&] {
        if (!earlier.is_object() || !earlier.contains("rows") || !earlier["rows"].is_array() ||
            !earlier.contains("held_out") || !earlier["held_out"].is_object())
            return false;
        const auto& a = earlier["held_out"];
        const auto& b = now.at("held_out");
        for (const char* key : {"verified_text", "verify_windows", "verify_ctx"})
            if (!a.contains(key) || a[key] != b.at(key)) return false;
        return earlier.contains("n_tokens") && earlier["n_tokens"] == now.at("n_tokens");
    };
    if (!same_text()) return now;
    nlohmann::json out = now;
    std::set<std::string> measured;
    for (const auto& r : now.at("rows")) measured.insert(r.at("name").get<std::string>());
    for (const auto& r : earlier["rows"])
        if (r.is_object() && r.contains("name") && r["name"].is_string() &&
            !measured.count(r["name"].get<std::string>()))
            out["rows"].push_back(r);
    const auto& tuned = earlier["held_out"].contains("tuned") ? earlier["held_out"]["tuned"]
                                                              : nlohmann::json::array();
    if (tuned.is_array())
        for (const auto& t : tuned)
            if (t.is_object() && t.contains("name") && t["name"].is_string() &&
                !measured.count(t["name"].get<std::string>()))
                out["held_out"]["tuned"].push_back(t);
    return out;
}

}  // namespace quantlens
