#include "analysis/studies/holdout.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "analysis/measure/chunks.h"
#include "analysis/measure/eval.h"
#include "analysis/studies/verify.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/utf8.h"
#include "engine/tokenizer.h"
#include "formats/recipe.h"
#include "jobs/store.h"
#include "model/model.h"

namespace quantlens {
namespace fs = std::filesystem;

namespace {

// What the recipe's sweep job says it evaluated; nullopt (with the reason in check.note) when
// the job cannot be found.
struct SweepText {
    std::string path, hash;
    int64_t ctx = 0, n_tokens = 0;
};

// recipe_model_hash: the recipe's model; a job of another model with the same id (another
// store, or the default one) is not the recipe's sweep and is not trusted.
std::optional<SweepText> sweep_text_of(const std::string& store_path, int64_t job_id,
                                       const std::string& recipe_model_hash, HeldOutCheck& check) {
    if (!fs::exists(store_path)) {
        check.note = fmt::format("job store {} not found", store_path);
        return std::nullopt;
    }
    jobs::StoreOptions so;
    so.create = false;
    jobs::Store store(store_path, so);
    const std::optional<jobs::Job> job = store.find_job(job_id);
    if (!job) {
        check.note = fmt::format("job {} is not in the store {}", job_id, store_path);
        return std::nullopt;
    }
    if (job->kind != jobs::JobKind::sweep) {
        check.note = fmt::format("job {} in {} is not a sweep", job_id, store_path);
        return std::nullopt;
    }
    if (!recipe_model_hash.empty() && !job->model_hash.empty() &&
        job->model_hash != recipe_model_hash) {
        check.note = fmt::format(
            "job {} in {} measured another model than the recipe's (pass --store with the "
            "recipe's job store)",
            job_id, store_path);
        return std::nullopt;
    }
    const nlohmann::json p = nlohmann::json::parse(job->params, nullptr, false);
    if (p.is_discarded() || !p.contains("eval_text") || !p["eval_text"].is_string()) {
        check.note = fmt::format("sweep job {} records no evaluation text", job_id);
        return std::nullopt;
    }
    SweepText t;
    t.path = p["eval_text"].get<std::string>();
    t.hash = job->text_hash;
    t.ctx = p.value("ctx", int64_t{512});
    t.n_tokens = p.value("n_tokens", int64_t{0});
    return t;
}

}  // namespace

HeldOut check_held_out(const VerifyOptions& o, const std::vector<VerifyCandidate>& candidates,
                       const Model& base_model) {
    HeldOutRequest r{o.text, o.ctx, o.chunks, o.store, o.allow_overlap, {}};
    for (const auto& c : candidates)
        if (!c.recipe.empty()) r.recipes.emplace_back(c.name, c.recipe);
    return check_held_out(r, base_model);
}

HeldOut check_held_out(const HeldOutRequest& o, const Model& base_model) {
    HeldOut h;
    h.verified_text = o.text;
    h.verify_ctx = o.ctx;
    if (o.recipes.empty()) return h;

    // Tokenized only when some recipe's sweep text can be compared.
    const Tokenizer tokenizer = Tokenizer::load(base_model);
    std::optional<EvalTokens> verify;
    auto verify_tokens = [&]() -> const EvalTokens& {
        if (!verify) {
            EvalOptions ev;
            ev.n_ctx = o.ctx;
            ev.max_chunks = o.chunks;
            verify = make_eval_tokens(tokenizer, read_utf8_text_file(o.text), o.text, ev);
            h.verify_windows = verify->n_chunks;
        }
        return *verify;
    };
    std::optional<std::string> verify_hash_memo;
    auto verify_hash = [&]() -> const std::string& {
        if (!verify_hash_memo) verify_hash_memo = hash_files({o.text});
        return *verify_hash_memo;
    };

    std::map<int64_t, std::pair<int64_t, int64_t>> by_job;  // job → (tuned, shared windows)
    std::vector<std::string> refusals;
    for (const auto& [name, recipe_path] : o.recipes) {
        HeldOutCheck check;
        check.name = name;
        const Recipe recipe = load_recipe(recipe_path);
        check.job_id = recipe.job_id;
        std::optional<SweepText> st;
        if (check.job_id <= 0)
            check.note = fmt::format("{} records no sweep job (no provenance)", recipe_path);
        else
            st = sweep_text_of(jobs::resolve_store_path(o.store), check.job_id, recipe.model_hash,
                               check);
        std::string tuned_path;  // a file whose content is the sweep's text
        if (st) {
            check.tuned_text = st->path;
            check.tuned_ctx = st->ctx;
            if (fs::exists(st->path) && hash_files({st->path}) == st->hash)
                tuned_path = st->path;
            else if (verify_hash() == st->hash)
                tuned_path = o.text;  // the same content under another name
            else
                check.note = fmt::format("{}, the text of sweep job {}, has changed or is gone",
                                         st->path, check.job_id);
        }
        if (!tuned_path.empty()) {
            auto known = by_job.find(check.job_id);  // recipes planned from one sweep
            if (known == by_job.end()) {
                // As the sweep cut them (prepare_context in analysis/sweep/sweep.cpp).
                const int64_t ctx = std::max<int64_t>(st->ctx, 1);
                const EvalChunks tuned = load_eval_chunks(tokenizer, tuned_path, st->ctx,
                                                          std::max<int64_t>(1, st->n_tokens / ctx));
                const EvalTokens& v = verify_tokens();
                known = by_job
                            .emplace(check.job_id,
                                     std::pair{tuned.n_chunks,
                                               count_shared_windows(tuned.tokens, tuned.n_ctx,
                                                                    v.tokens, v.n_ctx)})
                            .first;
            }
            check.tuned_windows = known->second.first;
            check.shared_windows = known->second.second;
            check.checked = true;
        }
        if (!check.checked) {
            fmt::print(stderr, "verify: {}: {}; whether it was tuned on {} is not checked\n", name,
                       check.note, o.text);
        } else if (check.shared_windows > 0) {
            const std::string what = fmt::format(
                "{} was tuned on {} (sweep job {}, {} windows of {} tokens) and {} of the {} "
                "windows of {} that verify evaluates share text with it",
                name, check.tuned_text, check.job_id, check.tuned_windows, check.tuned_ctx,
                check.shared_windows, h.verify_windows, o.text);
            if (o.allow_overlap) {
                check.note = "overlap allowed: " + what;
                fmt::print(stderr,
                           "verify: WARNING: {}; its KLD is measured on text it was tuned on "
                           "and flatters it (--allow-overlap)\n",
                           what);
            } else {
                refusals.push_back(what);
            }
        }
        h.recipes.push_back(check);
    }
    if (!refusals.empty()) {
        std::string all;
        for (const auto& r : refusals) all += (all.empty() ? "" : "; ") + r;
        fail(
            "verify: {}. Verify on held-out text (e.g. eval.txt when the sweep ran on "
            "calib.txt), or pass --allow-overlap to measure anyway",
            all);
    }
    return h;
}

std::string held_out_lines(const HeldOut& h) {
    std::string out = fmt::format("verified on {} ({} windows of {} tokens)\n", h.verified_text,
                                  h.verify_windows, h.verify_ctx);
    for (const auto& c : h.recipes) {
        if (!c.checked) {
            out += fmt::format("{}: tuned on {} — overlap not checked: {}\n", c.name,
                               c.tuned_text.empty() ? "unknown text" : c.tuned_text, c.note);
            continue;
        }
        out += fmt::format("{}: tuned on {} (sweep job {}, {} windows of {}); {}\n", c.name,
                           c.tuned_text, c.job_id, c.tuned_windows, c.tuned_ctx,
                           c.shared_windows == 0
                               ? std::string("held out: no verify window shares its text")
                               : fmt::format("OVERLAP: {} of {} verify windows share its text",
                                             c.shared_windows, h.verify_windows));
    }
    return out;
}

nlohmann::json held_out_json(const HeldOut& h) {
    nlohmann::json tuned = nlohmann::json::array();
    for (const auto& c : h.recipes) {
        nlohmann::json j = {{"name", c.name},
                            {"job_id", c.job_id},
                            {"tuned_text", c.tuned_text.empty() ? nlohmann::json(nullptr)
                                                                : nlohmann::json(c.tuned_text)},
                            {"tuned_windows", c.tuned_windows},
                            {"tuned_ctx", c.tuned_ctx},
                            {"checked", c.checked},
                            {"note", c.note}};
        j["shared_windows"] =
            c.checked ? nlohmann::json(c.shared_windows) : nlohmann::json(nullptr);
        tuned.push_back(j);
    }
    return {{"verified_text", h.verified_text},
            {"verify_windows", h.verify_windows},
            {"verify_ctx", h.verify_ctx},
            {"tuned", tuned}};
}

}  // namespace quantlens
