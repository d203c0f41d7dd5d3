// Test helper (header-only): the sweep and calibration options most tests start from, so
// each test states only what it varies.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "analysis/studies/calibrate.h"
#include "analysis/sweep/sweep.h"
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

}  // namespace quantlens::test_support
