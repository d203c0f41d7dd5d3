// `plan --interactions N`: measures a sample of pairs of the plan's units at their chosen
// types, and the whole mix, on the sweep's own tokens, and fits the pairwise correction of the
// predicted KLD (analysis/plan/interactions.h: the model, the sampling and the fit).
//
// Each measurement is a mix measured and stored by analysis/studies/mixes.h (the sweep's own
// item code), so a re-plan measures only the mixes it has not seen.
//
// The prediction is the whole mix measured (plan_job.h: apply_interaction_fit): on llama-8m
// the pairwise fit's standard error was larger than the cross term it estimates
// (analysis/plan/interactions.h), while one pass over the mix measures it exactly. The mix
// can be measured on more tokens of the sweep's text than the sweep used (mix_tokens), which
// removes the error of the sweep's sample; what remains is the shift to other text.
//
// Two errors are kept apart: non-additivity (the mix vs Σ d_i on the sweep's tokens, and the
// pair fit's error against the mix) and the text shift (the mix on the sweep's text vs
// `verify` on held-out text), which no measurement on the sweep's text can see. Refused by name: a
// placement sweep, a chosen item without kld_mean, and a class of pairs with weight
// but no measured pair.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "analysis/plan/interactions.h"
#include "analysis/studies/mixes.h"

namespace quantlens {

namespace jobs {
class Store;
}

struct InteractionStudy {
    std::vector<InteractionUnit> units;  // the plan's units at their chosen types
    std::vector<PairResult> pairs;       // the sampled pairs, measured
    InteractionFit fit;
    double mix_kld = 0;  // the whole mix's mean KLD on the sweep's tokens
    // The whole mix over the first mix_tokens tokens of the sweep's text (the sweep's own
    // n_tokens unless asked for more): the plan's prediction, mean and tails.
    int64_t mix_tokens = 0;
    double predicted_kld = 0, predicted_kld_p99 = 0, predicted_kld_p999 = 0;
    int64_t measured = 0, reused = 0;  // mixes measured now / found in the store
    double seconds = 0;                // measuring (0 when everything was stored)
};

// `chosen`: the plan's (sweep unit, measured item) pairs (PlanOutcome::chosen_items).
// mix_tokens > 0: the whole mix is also measured over that many tokens of the sweep's text
// (`plan --interactions-tokens`: a larger sample of the same text, one more reference pass;
// memory: the reference log-probabilities, tokens × vocabulary × 4 bytes).
InteractionStudy study_interactions(jobs::Store& store, int64_t job_id,
                                    const std::vector<std::pair<std::string, std::string>>& chosen,
                                    int n_pairs, int64_t mix_tokens = 0);

}  // namespace quantlens
