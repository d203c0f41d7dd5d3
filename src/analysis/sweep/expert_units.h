// Per-expert sensitivity for MoE models (`sweep --experts`). GGUF stores a layer's experts as
// one stacked tensor of one type, so recipes keep the stacked tensor as their unit; these
// units only measure: unit "blk.L.expert.E" quantizes expert E's slices of layer L's
// ffn_gate_exps / ffn_up_exps / ffn_down_exps (the same rows a fully quantized stacked tensor
// would hold, since every quantizer works row by row, with matrix E's imatrix column), and
// leaves every other expert as it was. Their rows carry, besides the sweep's metrics,
//   route_tokens   tokens of the evaluation text routed to E in layer L (reference pass)
//   route_share    route_tokens / (tokens × experts used per token): E's share of the
//                  layer's routed assignments (1 / n_experts when routing is uniform)
// plan ignores them (role "expert"); the "routing" artifact holds every expert's count, also
// of experts a sampled sweep does not measure.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "analysis/sweep/sweep.h"
#include "engine/sweep_backend.h"
#include "formats/model_config.h"

namespace quantlens {

class Engine;
class Model;

inline constexpr const char* kExpertRole = "expert";

// Expert units of every layer holding stacked experts, layer by layer, experts ascending.
// `sample` > 0 keeps that many experts per layer (all when the layer has fewer): a fixed
// pseudo-random choice per layer (splitmix64 seeded by the layer index), the same on every
// platform, so a resumed or sharded job measures the same experts. Throws Error naming the
// model when it has no stacked experts.
std::vector<SweepUnit> build_expert_units(const Model& model, int64_t sample);

// (layer, expert) of a unit named "blk.L.expert.E"; nullopt for any other name.
std::optional<std::pair<int, int>> parse_expert_unit(const std::string& name);

// Tokens routed to each expert of each layer: counts[layer][expert], filled from a sweep
// backend's routing observer (SweepBackend::observe_routing, CPU or GPU) while `attach`ed
// (layers without experts stay empty).
class RoutingCounter {
  public:
    explicit RoutingCounter(const ModelConfig& config);
    void attach(SweepBackend& backend);  // counts the backend's next forward passes
    void detach(SweepBackend& backend);
    // One layer's choices: rows × k expert ids.
    void add(int layer, std::span<const int32_t> ids, int64_t rows);
    const std::vector<std::vector<int64_t>>& counts() const { return counts_; }
    int64_t tokens(int layer) const;  // tokens seen by that layer's router
    int64_t top_k() const { return top_k_; }
    // {"top_k", "tokens": [per layer], "counts": [[per expert] per layer]}
    nlohmann::json to_json() const;

  private:
    std::vector<std::vector<int64_t>> counts_;
    std::vector<int64_t> tokens_;
    int64_t top_k_ = 0;
};

}  // namespace quantlens
