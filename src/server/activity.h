// Two read-only views the web app shows beside the job list:
//  - the progress of a `quantlens pull` the server started, read from the lines its progress
//    bar writes into the child's log (core/progress.cpp prints, off a terminal, one line
//    "pull ORG/NAME [####....]  40% 200/500 kB | ..." every few seconds and a last one);
//  - every recipe verified in a job store (`verify --job` keeps its table as the sweep job's
//    "verify" artifact), with the figures it measured.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

#include "jobs/store.h"

namespace quantlens::server {

struct PullProgress {
    int64_t done = 0, total = 0;  // in `unit`
    std::string unit;             // "kB" or "MB"
};

// The last progress line of `repo` in a pull's log text; nullopt when it printed none yet.
std::optional<PullProgress> last_pull_progress(const std::string& log_text,
                                               const std::string& repo);

// {"recipes": [{"job", "model", "name", "path", "size_bytes", "bpw", "ppl", "kld_mean",
//   "kld_p99", "kld_p999", "kld_max", "top1", "predicted_kld", "verified_text", "n_tokens"}]},
// newest job first: the recipe rows (not the presets beside them) of every
// job's verify artifact. An artifact that is not a verify table is skipped, never guessed at.
nlohmann::json verified_recipes_json(const jobs::Store& store);

}  // namespace quantlens::server
