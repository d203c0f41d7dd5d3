// The report-data document: everything the report page and the web app draw for one job,
// built from the job store as ONE JSON object. `quantlens report` inlines it into the HTML,
// `quantlens serve` returns it from GET /api/jobs/:id/report-data; web/src/report.js reads it.
//
// Schema (version 1; fields absent from the store are omitted or null, never invented):
//   {
//     "schema_version": 1,
//     "generated_by": "quantlens 0.1.0",
//     "job":   { the job as jobs::to_json(Job) writes it: id, kind, state, progress, ... },
//     "model": { "name": basename of the model path, "path", "hash",
//                "n_layers": max unit layer + 1, "n_params": sum of the units' n_params },
//     "types": [ { "name": "Q2_K", "bpw": 2.625 }, ... ]   // measured types, by bits per weight
//                                                          // ascending (ties by name)
//     "metrics": [ "act_mse", "kld_mean", ... ]             // every metric name present, sorted
//     "units": [ { "name", "layer" (-1 = not one layer), "role", "n_params",
//                  "pattern": anchored_pattern(name) (formats/recipe.h), "extra": {} } ]
//                                                          // in the store's insertion order
//     "cells": [ { "u": unit index, "t": type index, "m": { metric: value } } ]
//                                                          // one per measured (unit, type);
//                                                          // NaN values are written as null
//     "plans": [ { "name", "tensors": { tensor: type }, "size_bytes", "bpw", "predicted_kld",
//                  "predicted_kld_p99", "predicted_kld_p999" (null without tails),
//                  "objective": "mean" | "p99",
//                  "frontier": [ { "size_bytes", "bpw", "predicted_kld" (or, for objective
//                                  p99, "predicted_kld_p99") } ] } ]
//                                                          // artifacts "plan:<name>", by name
//     "verify": { "rows": [ { "name", "size_bytes", "bpw", "ppl", "kld_mean", "kld_p99",
//                             "kld_p999", "top1", "predicted_kld", "predicted_kld_p99",
//                             "llama_cpp": {...} (verify --llama-cpp) } ] } | null
//                                                          // artifact "verify"
//     "calibration": { ... } | null                        // artifact "calibration", as stored
//                                                          // (analysis/studies/calibrate.h): the
//                                                          job's
//                                                          // own, else (not for a calibrate
//                                                          // job) that of the newest done
//                                                          // calibrate job of the same model
//                                                          // hash in the store
//     "calibration_source": { "job", "same_job", "model", "finished" } | null
//                                                          // the job it came from
//   }
// A type's bpw comes from the ggml type table (bytes per block × 8 / block size); a type name
// the table does not know falls back to the mean of its measured `bpw` metric.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>

namespace quantlens::jobs {
class Store;
}

namespace quantlens::report {

inline constexpr int kReportSchemaVersion = 1;

// Throws Error when the job does not exist or a stored artifact is not valid JSON (naming the
// store, the job and the artifact).
nlohmann::json build_report_data(const jobs::Store& store, int64_t job_id);

// Bits per weight of a type name ("Q4_K", "q4_k", "F16"); nullopt-like -1 when unknown.
double type_bpw(const std::string& type_name);

}  // namespace quantlens::report
