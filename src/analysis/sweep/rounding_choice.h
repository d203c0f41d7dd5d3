// `sweep --rounding-choice` (sweep.h): which alternative-rounding items are evaluated, and what
// the alternatives cost beside the base sweep.
//
// Decision, made once the base items are measured: per (unit, type), the weight proxy
// (analysis/write/rounding.h) of the base rounding and of each alternative that applies to
// every tensor of the unit. An alternative can win when its proxy ratio (its proxy / the
// base's) is below 1 + margin; per (unit, type) only the one with the least ratio is a
// candidate, scored by the measured base ΔKLD × (1 + margin − ratio): the most KLD it could
// plausibly save. The candidates with the highest scores are evaluated, at most
// share × the number of base items, so the alternatives' evaluations cost about share × the
// base items' own; every other alternative is recorded with its proxies only. The decision
// is kept in the job's "rounding_choice" artifact, so a resumed job evaluates the same ones.
//
// Cost: base = the reference pass + every bare item's seconds; extra = the --gptq Hessians +
// the proxies + every alternative item's seconds; ratio = extra / base ("the sweep grows by
// 1 + ratio"). Kept in the "rounding_cost" artifact and printed by the summary.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "formats/recipe.h"
#include "jobs/store.h"

namespace quantlens {

class GptqRounding;
class Imatrix;
class Model;

struct RoundingDecision {
    double proxy_base = 0;  // Σ over the unit's tensors, base rounding
    double proxy = 0;       // the same, this item's rounding (0 when it does not apply)
    bool applies = false;   // the rounding can be done on every tensor of the unit
    bool evaluate = false;  // the item is evaluated (else recorded with its proxies only)
};
// (unit, item type such as "Q4_K+gptq") → decision.
using RoundingDecisions = std::map<std::pair<std::string, std::string>, RoundingDecision>;

struct RoundingProxyInputs {
    const Model* model = nullptr;
    const Imatrix* imatrix = nullptr;  // the sweep's (nullptr: none)
    const GptqRounding* gptq = nullptr;
    // A tensor's values as the sweep holds them (F16-rounded when it rounds so).
    std::function<std::vector<float>(const std::string&)> original;
};

struct RoundingChoiceRule {
    double margin = 0.05;  // a candidate's proxy ratio is below 1 + margin
    double share = 0.5;    // evaluate at most share × the base items
};

// The proxies of every alternative item of `items` (the job's work items); `unit_tensors`
// names each unit's tensors. Nothing is marked for evaluation yet.
RoundingDecisions rounding_proxies(
    const RoundingProxyInputs& in,
    const std::map<std::string, std::vector<std::string>>& unit_tensors,
    const std::vector<jobs::WorkItem>& items);
// Marks the items to evaluate by the rule above; `base_kld` is the measured ΔKLD of each base
// item (unit, bare type), `n_base_items` their number. A plain function of its inputs.
void choose_roundings(RoundingDecisions& decisions,
                      const std::map<std::pair<std::string, std::string>, double>& base_kld,
                      size_t n_base_items, const RoundingChoiceRule& rule);

// The "rounding_choice" artifact: margin, seconds spent on proxies and Hessians, decisions.
nlohmann::json rounding_choice_json(const RoundingDecisions& d, const RoundingChoiceRule& rule,
                                    double proxy_seconds, double hessian_seconds);
RoundingDecisions rounding_decisions_from_json(const nlohmann::json& j);

// The cost above from the job's stored seconds and artifacts; nullopt when the job made no
// rounding decision yet.
std::optional<nlohmann::json> rounding_cost_json(const jobs::Store& store, int64_t job_id);
// One paragraph for the sweep's summary ("" without a decision).
std::string rounding_cost_summary(const jobs::Store& store, int64_t job_id);

}  // namespace quantlens
