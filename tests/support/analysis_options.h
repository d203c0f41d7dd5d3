// Test helper (header-only): the sweep and calibration options most tests start from, so
// each test states only what it varies.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "analysis/studies/calibrate.h"
#include "analysis/sweep/sweep.h"
#include "jobs/runner.h"
#include "jobs/store.h"
#include "support/test_data.h"

namespace quantlens::test_support {

// A sweep of MODEL (a directory) over the first N_TOKENS tokens of the shared eval.txt in
// windows of CTX, at TYPES; everything else at SweepOptions' defaults.
inline SweepOptions eval_sweep(const std::string& model, int64_t n_tokens, int64_t ctx,
                               std::vector<GgmlType> types) {
    SweepOptions o;
    o.model = model;
    o.eval_text = shared_path("data/eval.txt");
    o.n_tokens = n_tokens;
    o.ctx = ctx;
    o.types = std::move(types);
    return o;
}

// Calibration over chunks of N_CTX tokens, at most MAX_CHUNKS of them, without a progress bar.
inline CalibrateOptions quiet_calibration(int64_t n_ctx, int64_t max_chunks) {
    CalibrateOptions o;
    o.n_ctx = n_ctx;
    o.max_chunks = max_chunks;
    o.progress = false;
    return o;
}

// A sweep job of OPTIONS created in STORE and run to the end: its id, or 0 if it did not finish
// (for the caller's ASSERT_GT).
inline int64_t run_sweep_job(jobs::Store& store, const SweepOptions& options) {
    const int64_t id = create_sweep_job(store, options, "test");
    store.start(id);
    const auto state = jobs::run_job(store, id, [&] { return run_sweep(store, id); });
    return state == jobs::JobState::done ? id : 0;
}

}  // namespace quantlens::test_support
