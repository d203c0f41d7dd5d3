// Held-out checking for `verify`: a recipe is judged on text it was not tuned on.
//
// A recipe's provenance (formats/recipe.h: job_id) names the sweep job whose measurements
// chose it; that job's parameters record the text it evaluated (eval_text, with its content
// hash in the job), the context and the token budget, so the windows the sweep evaluated can
// be rebuilt exactly (analysis/measure/chunks.h). They are compared with the windows verify
// evaluates by content hash.
//
// Promises:
//  - A verify window is "shared" when it holds a run of kSharedSpanTokens consecutive tokens
//    (BOS positions excluded) that also appears in a window the sweep evaluated. Identical
//    windows are always shared; so are windows cut at another context or offset from the
//    same text, which a whole-window hash would miss.
//  - The tuning text is the file the sweep recorded when its content hash still matches the
//    job; when it has changed or gone, the verify text stands in for it only if its hash is
//    the job's (then it is the same text). Otherwise the overlap is not checked, and said so.
//  - A recipe without a job_id, a store without the job, or a job that is not a sweep is not
//    an error: a note on stderr says that the overlap was not checked.
//  - Shared windows without allow_overlap throw Error naming the recipe, both texts and the
//    count; with allow_overlap the same is printed to stderr as a warning.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "analysis/measure/chunks.h"  // count_shared_windows

namespace quantlens {

class Model;
struct VerifyCandidate;
struct VerifyOptions;

struct HeldOutCheck {
    std::string name;        // the candidate's name in the verify table
    int64_t job_id = 0;      // the recipe's sweep job (0: none recorded)
    std::string tuned_text;  // the text that sweep evaluated ("" when unknown)
    int64_t tuned_windows = 0, tuned_ctx = 0;
    bool checked = false;  // false: the overlap could not be checked (see note)
    int64_t shared_windows = 0;
    std::string note;  // why not checked, or the warning given
};

struct HeldOut {
    std::string verified_text;
    int64_t verify_windows = 0, verify_ctx = 0;
    std::vector<HeldOutCheck> recipes;  // one per recipe candidate, in order
};

// What any verify (ggml or another format) needs for the check.
struct HeldOutRequest {
    std::string text;  // the verify text
    int64_t ctx = 512, chunks = 100;
    std::string store;  // "" = the default store
    bool allow_overlap = false;
    std::vector<std::pair<std::string, std::string>> recipes;  // (name in the table, path)
};

// Checks every recipe (files and presets have no tuning text). Opens the job store only when
// a recipe names a job.
HeldOut check_held_out(const HeldOutRequest& request, const Model& base_model);
// The same for run_verify's recipe candidates.
HeldOut check_held_out(const VerifyOptions& options, const std::vector<VerifyCandidate>& candidates,
                       const Model& base_model);

// Lines for the verify table: which text verified, and which text tuned each recipe.
std::string held_out_lines(const HeldOut& held_out);
nlohmann::json held_out_json(const HeldOut& held_out);

}  // namespace quantlens
