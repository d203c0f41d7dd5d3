// Shared helpers for the job store tests: a fresh directory per test under the build tree's
// test-tmp, and a deterministic stand-in for a sweep (units × types, metrics derived from the
// item's name) so runs split, interrupted or merged can be compared exactly.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "jobs/store.h"
#include "support/test_data.h"

namespace quantlens::jobs::testing {

inline std::string fresh_dir(const std::string& name) {
    return test_support::fresh_dir("jobs-" + name);
}

inline const std::vector<std::string>& fake_types() {
    static const std::vector<std::string> types = {"Q8_0", "Q6_K", "Q5_K",   "Q4_K",
                                                   "Q3_K", "Q2_K", "IQ4_XS", "IQ3_S"};
    return types;
}

inline std::vector<Unit> fake_units(int n_layers) {
    std::vector<Unit> units;
    units.push_back({"token_embd.weight", -1, "token_embd", 32000 * 256, "{}"});
    for (int l = 0; l < n_layers; ++l)
        for (const char* role : {"attn_q", "attn_k", "attn_v", "ffn_down"})
            units.push_back(
                {"blk." + std::to_string(l) + "." + role + ".weight", l, role, 256 * 256, "{}"});
    return units;
}

inline std::vector<WorkItem> fake_items(const std::vector<Unit>& units) {
    std::vector<WorkItem> items;
    for (const auto& u : units)
        for (const auto& t : fake_types()) items.push_back({u.name, t});
    return items;
}

// What a measurement of (unit, type) "returns": a pure function of the item, as a real
// sweep is of its inputs.
inline Metrics fake_metrics(const std::string& unit, const std::string& type) {
    const size_t h = std::hash<std::string>{}(unit + "|" + type);
    const double x = static_cast<double>(h % 1000003) / 1000003.0;
    return {{"kld", x * 0.01},
            {"dppl", x * 0.5 - 0.1},
            {"top1", 1.0 - x * 0.05},
            {"act_mse", x * x},
            {"rmse", static_cast<double>(h % 97) / 7.0}};
}

// Creates a sweep-like job with its units and items in `store`; returns its id.
inline int64_t create_fake_sweep(Store& store, int n_layers, const std::string& params = "{}") {
    NewJob nj;
    nj.kind = JobKind::sweep;
    nj.params = params;
    nj.model = "llama-8m";
    nj.model_hash = "00112233aabbccdd";
    nj.text_hash = "ffeeddcc44556677";
    nj.command = "quantlens sweep llama-8m --eval wiki.txt";
    const int64_t id = store.create_job(nj);
    const auto units = fake_units(n_layers);
    store.add_units(id, units);
    store.add_work_items(id, fake_items(units));
    return id;
}

// Measures every pending item, polling should_stop between items like a real runner.
inline bool run_fake_items(Store& store, int64_t id) {
    for (const WorkItem& w : store.pending_items(id)) {
        if (store.should_stop(id)) return false;
        store.record_item(id, w.unit, w.type, fake_metrics(w.unit, w.type));
    }
    return true;
}

}  // namespace quantlens::jobs::testing
