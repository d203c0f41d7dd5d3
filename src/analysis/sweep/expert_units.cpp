#include "analysis/sweep/expert_units.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <numeric>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "engine/engine.h"
#include "model/model.h"

namespace quantlens {

namespace {

// splitmix64: a tiny generator whose sequence is fixed by its definition (std::shuffle and
// the standard distributions are not the same across standard libraries).
uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// `k` of 0..n-1 in ascending order, chosen by a partial Fisher–Yates shuffle seeded by `seed`.
std::vector<int64_t> sample_indices(int64_t n, int64_t k, uint64_t seed) {
    std::vector<int64_t> idx(static_cast<size_t>(n));
    std::iota(idx.begin(), idx.end(), 0);
    if (k <= 0 || k >= n) return idx;
    uint64_t state = seed;
    for (int64_t i = 0; i < k; ++i) {
        const auto j = i + static_cast<int64_t>(splitmix64(state) % static_cast<uint64_t>(n - i));
        std::swap(idx[static_cast<size_t>(i)], idx[static_cast<size_t>(j)]);
    }
    idx.resize(static_cast<size_t>(k));
    std::sort(idx.begin(), idx.end());
    return idx;
}

}  // namespace

std::vector<SweepUnit> build_expert_units(const Model& model, int64_t sample) {
    // layer → its stacked expert tensors (3-D quantizable weights: [C or F, F or C, experts])
    std::map<int, std::vector<const TensorInfo*>> stacked;
    for (const auto& t : model.tensors())
        if (t.quantizable && t.layer >= 0 && t.ne.size() >= 3 && t.ne[2] > 1)
            stacked[t.layer].push_back(&t);
    QL_CHECK(!stacked.empty(),
             "sweep --experts: {} has no stacked expert tensors (ffn_*_exps); per-expert "
             "sensitivity needs an MoE model",
             model.path());
    QL_CHECK(sample >= 0, "sweep --expert-sample {}: expected a number of experts ≥ 0", sample);
    std::vector<SweepUnit> units;
    for (const auto& [layer, tensors] : stacked) {
        const int64_t n_experts = tensors.front()->ne[2];
        for (const TensorInfo* t : tensors)
            QL_CHECK(t->ne[2] == n_experts, "{}: '{}' stacks {} experts, '{}' {}", model.path(),
                     t->name, t->ne[2], tensors.front()->name, n_experts);
        for (int64_t e :
             sample_indices(n_experts, sample, 0x5eedULL + static_cast<uint64_t>(layer))) {
            SweepUnit u;
            u.name = fmt::format("blk.{}.expert.{}", layer, e);
            u.layer = layer;
            u.role = kExpertRole;
            for (const TensorInfo* t : tensors) {
                u.tensors.push_back(t->name);
                u.n_params += t->n_elements() / n_experts;
            }
            units.push_back(std::move(u));
        }
    }
    return units;
}

std::optional<std::pair<int, int>> parse_expert_unit(const std::string& name) {
    int layer = -1, expert = -1, used = 0;
    if (std::sscanf(name.c_str(), "blk.%d.expert.%d%n", &layer, &expert, &used) != 2 ||
        used != static_cast<int>(name.size()) || layer < 0 || expert < 0)
        return std::nullopt;
    return std::make_pair(layer, expert);
}

RoutingCounter::RoutingCounter(const ModelConfig& config)
    : counts_(static_cast<size_t>(config.n_layers)),
      tokens_(static_cast<size_t>(config.n_layers), 0),
      top_k_(config.n_experts_used) {
    if (config.is_moe())
        for (auto& c : counts_) c.assign(static_cast<size_t>(config.n_experts), 0);
}

void RoutingCounter::attach(SweepBackend& backend) {
    backend.observe_routing([this](int layer, std::span<const int32_t> ids, int64_t rows, int64_t) {
        add(layer, ids, rows);
    });
}

void RoutingCounter::detach(SweepBackend& backend) {
    backend.observe_routing({});
}

void RoutingCounter::add(int layer, std::span<const int32_t> ids, int64_t rows) {
    auto& c = counts_.at(static_cast<size_t>(layer));
    tokens_.at(static_cast<size_t>(layer)) += rows;
    for (int32_t e : ids) ++c.at(static_cast<size_t>(e));
}

int64_t RoutingCounter::tokens(int layer) const {
    return tokens_.at(static_cast<size_t>(layer));
}

nlohmann::json RoutingCounter::to_json() const {
    return {{"top_k", top_k_}, {"tokens", tokens_}, {"counts", counts_}};
}

}  // namespace quantlens
