// `verify --format gptq`: see gptq_verify.h.
#include "analysis/studies/gptq_verify.h"

#include "analysis/studies/holdout.h"
#include "analysis/studies/verify.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "analysis/measure/eval.h"
#include "analysis/write/gptq_formats.h"
#include "analysis/write/gptq_rounding.h"
#include "core/error.h"
#include "core/utf8.h"
#include "engine/engine.h"
#include "engine/tokenizer.h"
#include "formats/recipe.h"
#include "model/model.h"

namespace quantlens {
namespace fs = std::filesystem;

namespace {

struct Candidate {
    std::string name;
    std::map<std::string, GptqFormat> tensors;  // GGUF name → format
    bool act_order = false;
    double predicted = std::nan("");
};

Candidate uniform(const Model& model, const GptqFormat& f, bool act_order) {
    Candidate c{"uniform " + gptq_format_name(f), {}, act_order, std::nan("")};
    for (const auto& t : model.tensors())
        if (gptq_quantizes(t)) c.tensors[t.name] = f;
    return c;
}

}  // namespace

GptqVerifyReport run_gptq_verify(const GptqVerifyOptions& o,
                                 const std::vector<std::string>& recipes) {
    QL_CHECK(!recipes.empty(), "verify --format gptq: give a GPTQ --recipe (plan --format gptq)");
    auto model = Model::open(o.base_model);
    HeldOutRequest held_out{o.text, o.ctx, o.chunks, o.store, o.allow_overlap, {}};
    for (const auto& path : recipes)
        held_out.recipes.emplace_back(fs::path(path).stem().string(), path);
    check_held_out(held_out, *model);  // refuses tuned-on text before any long work
    std::vector<Candidate> cands;
    for (const auto& path : recipes) {
        const Recipe r = load_recipe(path);
        QL_CHECK(r.is_gptq(), "verify --format gptq: {} is not a GPTQ recipe (plan --format gptq)",
                 path);
        Candidate c{fs::path(path).stem().string(), r.gptq_tensors, r.gptq_desc_act,
                    r.predicted_kld};
        for (const auto& [name, f] : c.tensors) {
            const TensorInfo* t = nullptr;
            for (const auto& x : model->tensors())
                if (x.name == name) t = &x;
            QL_CHECK(t != nullptr, "{}: tensor '{}' is not in {}", path, name, o.base_model);
            QL_CHECK(gptq_quantizes(*t), "{}: tensor '{}' is not a Linear weight GPTQ quantizes",
                     path, name);
            check_gptq_shape(f, t->n_rows(), t->n_per_row(), name);
        }
        cands.push_back(std::move(c));
    }
    if (o.baselines) {
        const bool act = cands.front().act_order;
        cands.push_back(uniform(*model, {4, 128, true}, act));
        cands.push_back(uniform(*model, {8, 128, true}, act));
    }

    EngineOptions eo;
    eo.f16_weights = true;
    eo.ggml_numerics = false;
    Engine engine(*model, eo);
    Tokenizer tokenizer = Tokenizer::load(*model);
    std::unique_ptr<GptqRounding> gptq;
    if (!o.gptq_text.empty())
        gptq = std::make_unique<GptqRounding>(engine, tokenizer,
                                              GptqSettings{o.gptq_text, 512, o.gptq_chunks});
    engine.clear_hook();

    EvalOptions ev;
    ev.n_ctx = o.ctx;
    ev.max_chunks = o.chunks;
    ev.save_logits_overwrite = Overwrite::replace;  // out_dir is verify's own working folder
    const EvalTokens chunks = make_eval_tokens(tokenizer, read_utf8_text_file(o.text), o.text, ev);
    if (gptq) {  // GPTQ's rounding judged on the text it was fitted to: optimistic for everyone
        const int64_t shared = gptq->windows_fitted_on(chunks.tokens, chunks.n_ctx);
        if (shared > 0)
            fmt::print(stderr,
                       "verify --format gptq: warning: {} of the {} windows of {} share text with "
                       "--gptq {} (its last {} × {} tokens fit GPTQ's rounding): every candidate "
                       "is judged on the text it was fitted to (optimistic, most for few bits)\n",
                       shared, chunks.n_chunks, o.text, o.gptq_text, gptq->n_chunks(),
                       gptq->settings().ctx);
    }
    fs::create_directories(o.out_dir);
    const std::string base_logits = (fs::path(o.out_dir) / "base-gptq.qllogp").string();
    GptqVerifyReport report;
    {
        const EvalResult r = evaluate(engine, chunks, ev, {}, base_logits);
        report.base_ppl = r.ppl.ppl;
        report.n_tokens = chunks.n_chunks * chunks.n_ctx;
    }
    const LogitsFile base_file(base_logits);
    int64_t n_params = 0;
    for (const auto& t : model->tensors()) n_params += t.n_elements();
    const uint64_t fixed = gptq_unquantized_bytes(*model);

    for (const auto& c : cands) {
        fmt::print(stderr, "verify --format gptq: {}\n", c.name);
        uint64_t bytes = fixed;
        for (const auto& [name, f] : c.tensors) {
            const TensorInfo& t = model->get(name);
            GptqFakeQuant q = gptq_fake_quant(t, engine.original(name), f, gptq.get(), c.act_order);
            bytes += q.bytes;
            engine.set_override(name, std::move(q.values), GgmlType::F32);
        }
        const EvalResult r = evaluate(engine, chunks, ev, {nullptr, &base_file});
        engine.clear_overrides();
        QL_ASSERT(r.kld.has_value());
        GptqVerifyRow row;
        row.name = c.name;
        row.size_bytes = bytes;
        row.bpw = bits_per_weight(static_cast<double>(bytes), static_cast<double>(n_params));
        set_eval_figures(row, r);
        row.predicted_kld = c.predicted;
        report.rows.push_back(row);
    }
    return report;
}

std::string gptq_verify_table(const GptqVerifyReport& rep) {
    std::string out = fmt::format("base PPL {:.3f} over {} tokens (GPTQ fake quantization)\n",
                                  rep.base_ppl, rep.n_tokens);
    out += fmt::format("{:<22} {:>10} {:>6} {:>9} {:>10} {:>9} {:>9} {:>8} {:>11}\n", "name", "MB",
                       "bpw", "PPL", "mean KLD", "KLD p99", "p99.9", "top-1 %", "predicted");
    for (const auto& r : rep.rows)
        out += fmt::format(
            "{:<22} {:>10.4f} {:>6.3f} {:>9.3f} {:>10.6f} {:>9.5f} {:>9.5f} {:>8.2f} {:>11}\n",
            r.name, r.size_bytes / 1e6, r.bpw, r.ppl, r.kld_mean, r.kld_p99, r.kld_p999,
            100 * r.top1,
            std::isnan(r.predicted_kld) ? "-" : fmt::format("{:.6f}", r.predicted_kld));
    return out;
}

nlohmann::json gptq_verify_json(const GptqVerifyReport& rep) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& r : rep.rows)
        rows.push_back(
            {{"name", r.name},
             {"size_bytes", r.size_bytes},
             {"bpw", r.bpw},
             {"ppl", r.ppl},
             {"kld_mean", r.kld_mean},
             {"kld_err", r.kld_err},
             {"kld_p99", r.kld_p99},
             {"kld_p999", r.kld_p999},
             {"kld_max", r.kld_max},
             {"top1", r.top1},
             {"predicted_kld", std::isnan(r.predicted_kld) ? nlohmann::json(nullptr)
                                                           : nlohmann::json(r.predicted_kld)}});
    return {
        {"format", "gptq"}, {"base_ppl", rep.base_ppl}, {"n_tokens", rep.n_tokens}, {"rows", rows}};
}

}  // namespace quantlens
