// `audit`: sensitivity profiles of a zoo of models, compared across models by tensor role
// and relative depth, as one resumable job.
//
// The zoo file (YAML):
//   base_dir: ..                  # optional; relative paths resolve against it, and it against
//                                 # the zoo file's folder (default: the zoo file's folder)
//   defaults: {text: data/eval.txt, types: [Q4_K, Q2_K], tokens: 1024, ctx: 256,
//              granularity: tensor}
//   models:
//     - name: llama-8m
//       fp: ../shared/models/llama-8m
//       text: ...                 # optional, overrides defaults (so do types, tokens, ...)
//       quants: [../shared/models/llama-8m-Q4_K_M.gguf]   # optional: compared (compare.h)
//
// The audit job (kind audit) has one work item per model ("sweep") and per quant
// ("compare:<file name>"). Each item runs a child job in the same store (a sweep job,
// analysis/sweep/sweep.h, without the "(all)" unit; a compare job without attribution), whose id
// is recorded in an artifact before it starts, so an interrupted audit resumes its children
// where they stopped and never measures an item twice. The audit item is recorded with the
// model's profile once its child is done.
//
// Profile of a model at a type: each sweep unit's ΔKLD (kld_mean with only that unit
// quantized) summed into groups, divided by the sum over all units, so profiles of models
// of different overall sensitivity compare:
//   by role:  attention (q, k, v, o), ffn (dense gate/up/down), experts (stacked expert
//             tensors), shared expert, router, embedding, output;
//   by depth: first layer, middle layers, last layer (needs granularity tensor or layer).
// Stored as audit measurements: unit = "<model>", type = the ggml type, metric =
// "share_<group>" and "kld_<group>" (the unnormalized sums), plus "kld_sum".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/ggml_type.h"

namespace quantlens {

namespace jobs {
class Store;
}

struct ZooModel {
    std::string name, fp, text;
    std::vector<GgmlType> types;
    int64_t tokens = 1024, ctx = 256;
    std::string granularity = "tensor";
    std::vector<std::string> quants;
};

struct Zoo {
    std::string path;
    std::vector<ZooModel> models;
    nlohmann::json to_json() const;
    static Zoo from_json(const nlohmann::json& j);
};

// Parses and validates a zoo file (paths resolved and checked to exist, names unique, types
// known); Error names the file and the entry.
Zoo load_zoo(const std::string& path);

// The unfinished audit job of this zoo (same models and settings) when there is one, else a
// new queued job; `resumed` says which.
int64_t find_or_create_audit_job(jobs::Store& store, const Zoo& zoo,
                                 const std::string& command_line, bool* resumed = nullptr);
// Runs or resumes it; true when every item is done, false when a stop was requested.
bool run_audit(jobs::Store& store, int64_t job_id);

// The profile groups in table order (role groups, then depth groups).
const std::vector<std::string>& audit_groups();

struct AuditRow {
    std::string model, type;
    double kld_sum = 0;                 // Σ over units of ΔKLD
    std::vector<double> share;          // per audit_groups(); NaN when the group is absent
    std::vector<double> kld;            // the same, unnormalized
    std::vector<std::string> compares;  // "file: mean KLD …" per quant compared
};

std::vector<AuditRow> audit_rows(const jobs::Store& store, int64_t job_id);
// One table: a row per group, a column per (model, type), values = share of ΔKLD in %.
std::string audit_table(const std::vector<AuditRow>& rows);
// Data for one chart (grouped bars: group × model/type).
nlohmann::json audit_to_json(const std::vector<AuditRow>& rows, int64_t job_id);

}  // namespace quantlens
