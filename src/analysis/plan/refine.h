// `plan --refine N`: a plan's choice improved by measuring its mix, not by adding up its units.
// Pure arithmetic over a measuring callback; analysis/studies/refine.h measures the mixes.
//
// The knapsack minimizes Σ per-unit ΔKLD, each unit measured alone against the full-precision
// model. In the mix the units' errors do not add up (analysis/plan/interactions.h: +3 % on a
// llama-8m ggml mix, +10–15 % on its GPTQ-format mixes), and a unit's cost in the mix is not its
// cost alone. Each round therefore re-linearizes around the current mix x:
//   - every unit u is moved alone to its neighbours on its own Pareto frontier of
//     (bytes, ΔKLD alone), one dearer and one cheaper option, and each such mix x_{u→o} is
//     measured;
//   - d'(u, o) = KLD(x_{u→o}) − KLD(x) is the move's cost in this mix (0 for staying);
//   - the same exact knapsack, over {stay, up, down} per unit with costs d', picks the moves
//     within the plan's budget;
//   - the new mix is measured and kept only if its KLD is lower. If not, the moves were too
//     many for a linear model: each move is charged a penalty that doubles until at most half
//     as many are made, up to three times; then the search stops.
// A round measures about two mixes per unit plus one to four. The measured KLD on the
// measuring text is what falls; held-out text is verify's to judge.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "analysis/plan/plan.h"

namespace quantlens {

struct RefineStep {
    int round = 0;
    int64_t candidates = 0;  // single-unit moves measured in the round
    int64_t moves = 0;       // units this step changes
    double predicted = 0;    // the mix's KLD the linearization predicts
    double measured = 0;     // the mix's KLD measured
    bool accepted = false;
};

struct RefineResult {
    std::vector<size_t> choice;  // option index per unit
    double start_kld = 0;        // the given choice, measured
    double kld = 0;              // the returned choice, measured
    std::vector<RefineStep> steps;
};

// Measures each choice (an option index per unit of the problem); returns their mean KLDs in
// order. `what` names the batch for a progress bar.
using MeasureChoices =
    std::function<std::vector<double>(const std::vector<std::vector<size_t>>&, const char* what)>;

// Refuses rounds < 1, a choice of the wrong length or option, and a choice over budget (bytes
// including the problem's fixed_bytes).
RefineResult refine_choice(const PlanProblem& problem, std::vector<size_t> choice, uint64_t budget,
                           int rounds, const MeasureChoices& measure);

}  // namespace quantlens
