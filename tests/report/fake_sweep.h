// Test helper (header-only): fills a job store with a fake but well-formed sweep of
// llama-8m — the real tensor names and parameter counts derived from its config.json, every
// (unit, type) measured with the metrics the real sweep stores, plus a plan, verify rows and
// calibration statistics — so the report and the server unit tests have data with the real
// shape without running a model. Values follow a smooth law (error falls ~2× per extra bit,
// some roles and the first layer more sensitive) so knees and orderings are meaningful; they
// are not measurements. Used by tests/report and tests/server (the browser tests,
// web/tests/browser.test.mjs, measure a real sweep instead).
#pragma once

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "jobs/store.h"

namespace quantlens::test_support {

struct FakeType {
    const char* name;
    double bpw;
};
// Types measured by the fake sweep, by bits per weight (ggml block sizes).
inline const std::vector<FakeType>& fake_types() {
    static const std::vector<FakeType> types = {{"Q2_K", 2.625}, {"Q3_K", 3.4375}, {"Q4_K", 4.5},
                                                {"Q5_K", 5.5},   {"Q6_K", 6.5625}, {"Q8_0", 8.5}};
    return types;
}

struct FakeTensor {
    std::string name, role;
    int64_t layer, rows, cols;
};

// llama.cpp tensor names of a Llama checkpoint from its config.json (quantizable ones).
inline std::vector<FakeTensor> llama_tensors(const std::string& model_dir) {
    std::ifstream in(model_dir + "/config.json");
    QL_CHECK(in.good(), "{}/config.json: cannot open", model_dir);
    const auto cfg = nlohmann::json::parse(in);
    const int64_t n_layer = cfg.at("num_hidden_layers"), d = cfg.at("hidden_size");
    const int64_t ff = cfg.at("intermediate_size"), vocab = cfg.at("vocab_size");
    const int64_t heads = cfg.at("num_attention_heads");
    const int64_t kv = cfg.value("num_key_value_heads", heads);
    const int64_t dkv = d / heads * kv;
    std::vector<FakeTensor> out = {{"token_embd.weight", "embed", -1, vocab, d}};
    for (int64_t l = 0; l < n_layer; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        out.push_back({p + "attn_q.weight", "attn_q", l, d, d});
        out.push_back({p + "attn_k.weight", "attn_k", l, dkv, d});
        out.push_back({p + "attn_v.weight", "attn_v", l, dkv, d});
        out.push_back({p + "attn_output.weight", "attn_output", l, d, d});
        out.push_back({p + "ffn_gate.weight", "ffn_gate", l, ff, d});
        out.push_back({p + "ffn_up.weight", "ffn_up", l, ff, d});
        out.push_back({p + "ffn_down.weight", "ffn_down", l, d, ff});
    }
    out.push_back({"output.weight", "output", -1, vocab, d});
    return out;
}

inline double fake_sensitivity(const FakeTensor& t) {
    static const std::map<std::string, double> role = {
        {"attn_v", 3.0}, {"ffn_down", 2.5}, {"output", 2.0}, {"embed", 0.6}, {"attn_k", 0.8}};
    const auto it = role.find(t.role);
    const double r = it == role.end() ? 1.0 : it->second;
    return r * (t.layer == 0 ? 2.0 : 1.0) * (1.0 + 0.05 * static_cast<double>(t.layer % 3));
}

struct FakeSweep {
    int64_t job = 0;
    size_t n_units = 0, n_types = 0, n_layers = 0;
};

// Creates a done sweep job of `model_dir` in `store` with every (unit, type) measured.
inline FakeSweep fill_fake_sweep(jobs::Store& store, const std::string& model_dir,
                                 bool with_extras = true) {
    const auto tensors = llama_tensors(model_dir);
    jobs::NewJob nj;
    nj.kind = jobs::JobKind::sweep;
    nj.model = model_dir;
    nj.model_hash = "fake0000";
    nj.params =
        nlohmann::json{{"granularity", "tensor"}, {"fixture", true}, {"model", model_dir}}.dump();
    nj.command = "quantlens sweep " + model_dir;
    const int64_t job = store.create_job(nj);
    store.start(job);
    std::vector<jobs::Unit> units;
    int64_t n_layers = 0;
    for (const auto& t : tensors) {
        units.push_back({t.name, t.layer, t.role, t.rows * t.cols, "{}"});
        n_layers = std::max(n_layers, t.layer + 1);
    }
    store.add_units(job, units);
    std::vector<jobs::WorkItem> items;
    for (const auto& t : tensors)
        for (const auto& ty : fake_types()) items.push_back({t.name, ty.name});
    store.add_work_items(job, items);
    std::map<std::string, std::map<std::string, double>> kld;  // tensor → type → kld
    for (const auto& t : tensors) {
        const double s = fake_sensitivity(t);
        for (const auto& ty : fake_types()) {
            const double rel = 0.9 * std::exp2(-ty.bpw);  // relative weight error
            jobs::Metrics m;
            m["w_rel_fro"] = rel;
            m["w_rmse"] = rel * 0.02;
            m["w_cos"] = 1.0 - rel * rel / 2;
            m["w_snr_db"] = -20 * std::log10(rel);
            m["w_imat_err"] = rel * rel * s * 10;
            // KLD drops ~4x per bit up to a floor: a knee between Q4 and Q5.
            m["kld_mean"] = s * 0.05 * std::exp2(-2.0 * ty.bpw) + 2e-6;
            m["ppl_delta"] = m["kld_mean"] * 60;
            m["top1_agree"] = 1.0 - std::min(0.5, m["kld_mean"] * 3);
            double act = 0;
            for (int64_t l = std::max<int64_t>(t.layer, 0); l < n_layers; ++l) {
                const double v = s * rel * rel * (1.0 + 0.2 * static_cast<double>(l));
                m["act_mse_L" + std::to_string(l)] = v;
                act += v / static_cast<double>(n_layers);
            }
            m["act_mse"] = act;
            m["bytes"] = std::ceil(static_cast<double>(t.rows * t.cols) * ty.bpw / 8);
            m["bpw"] = ty.bpw;
            kld[t.name][ty.name] = m["kld_mean"];
            store.record_item(job, t.name, ty.name, m);
        }
    }
    if (with_extras) {
        // A plan: Q4_K everywhere, Q6_K for the sensitive roles; and a crude frontier.
        nlohmann::json plan = {{"tensors", nlohmann::json::object()}};
        double size = 0, pred = 0, params = 0;
        for (const auto& t : tensors) {
            const bool hi = t.role == "attn_v" || t.role == "ffn_down" || t.role == "output";
            const char* ty = hi ? "Q6_K" : "Q4_K";
            const double bpw = hi ? 6.5625 : 4.5;
            plan["tensors"][t.name] = ty;
            size += std::ceil(static_cast<double>(t.rows * t.cols) * bpw / 8);
            params += static_cast<double>(t.rows * t.cols);
            pred += kld[t.name][ty];
        }
        plan["size_bytes"] = size;
        plan["bpw"] = size * 8 / params;
        plan["predicted_kld"] = pred;
        plan["frontier"] = nlohmann::json::array();
        for (const auto& ty : fake_types()) {
            double k = 0;
            for (const auto& t : tensors) k += kld[t.name][ty.name];
            plan["frontier"].push_back(
                {{"size_bytes", params * ty.bpw / 8}, {"bpw", ty.bpw}, {"predicted_kld", k * 0.8}});
        }
        store.put_artifact(job, {"plan:mixed-4.9", true, plan.dump()});
        nlohmann::json verify = {{"rows", nlohmann::json::array()}};
        for (const char* preset : {"Q3_K", "Q4_K", "Q6_K"}) {
            double bpw = 0, k = 0;
            for (const auto& ty : fake_types())
                if (std::string(ty.name) == preset) bpw = ty.bpw;
            for (const auto& t : tensors) k += kld[t.name][preset];
            verify["rows"].push_back({{"name", preset},
                                      {"size_bytes", params * bpw / 8},
                                      {"bpw", bpw},
                                      {"ppl", 52.17 * std::exp(k)},
                                      {"kld_mean", k},
                                      {"top1", 1 - k * 2}});
        }
        verify["rows"].push_back({{"name", "plan:mixed-4.9"},
                                  {"size_bytes", size},
                                  {"bpw", size * 8 / params},
                                  {"ppl", 52.17 * std::exp(pred * 1.1)},
                                  {"kld_mean", pred * 1.1},
                                  {"top1", 1 - pred * 2.2},
                                  {"predicted_kld", pred}});
        store.put_artifact(job, {"verify", true, verify.dump()});
        nlohmann::json cal = {{"tensors", nlohmann::json::object()}};
        for (const auto& t : tensors) {
            if (t.layer < 0 || (t.role != "attn_q" && t.role != "ffn_down")) continue;
            std::vector<double> imp(static_cast<size_t>(t.cols));
            for (size_t c = 0; c < imp.size(); ++c)  // a few outlier channels, like real models
                imp[c] = 0.01 + 0.001 * static_cast<double>((c * 37) % 101) +
                         (c % 61 == 7 ? 2.0 + static_cast<double>(t.layer) : 0.0);
            std::vector<double> counts;
            for (int b = -20; b < 20; ++b)
                counts.push_back(std::round(1e5 * std::exp(-b * b / 50.0)));
            std::vector<double> edges;
            for (int b = -20; b <= 20; ++b) edges.push_back(b * 0.005);
            cal["tensors"][t.name] = {
                {"layer", t.layer},
                {"role", t.role},
                {"importance", imp},
                {"kurtosis", 3.0 + (t.role == "ffn_down" ? 20.0 : 1.0) / (1.0 + t.layer)},
                {"weight_hist",
                 {{"edges", edges}, {"counts", counts}, {"mean", 0.0}, {"std", 0.025}}}};
        }
        store.put_artifact(job, {"calibration", true, cal.dump()});
    }
    store.finish(job);
    return {job, tensors.size(), fake_types().size(), static_cast<size_t>(n_layers)};
}

}  // namespace quantlens::test_support
