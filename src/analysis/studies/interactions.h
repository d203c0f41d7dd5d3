// `plan --interactions N`: measures a sample of pairs of the plan's units at their chosen
// types, and the whole mix, on the sweep's own tokens, and fits the pairwise correction of the
// predicted KLD (analysis/plan/interactions.h: the model, the sampling and the fit).
//
// Each measurement is a sweep item over several units (SweepMeasurer::measure_mix, the sweep's
// own item code: same tokens, reference pass, imatrix, numerics, rounding). What is measured
// is stored in the sweep job's "interactions" artifact, one entry per mix (its sorted
// (unit, item) list → kld_mean, kld_p99, kld_p999), so a re-plan measures only the mixes it
// has not seen; the model and the text are checked against the job's before any measurement.
//
// Two errors are kept apart: the pair model's error on the sweep's text (corrected prediction
// vs the measured mix: non-additivity the pairs do not capture) and the text shift (the mix on
// the sweep's text vs `verify` on held-out text), which no measurement on the sweep's text can
// see. Refused by name: a GPTQ-format or placement sweep, a chosen item without kld_mean, and
// a class of pairs with weight but no measured pair.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "analysis/plan/interactions.h"

namespace quantlens {

namespace jobs {
class Store;
}

struct InteractionStudy {
    std::vector<InteractionUnit> units;  // the plan's units at their chosen types
    std::vector<PairResult> pairs;       // the sampled pairs, measured
    InteractionFit fit;
    double mix_kld = 0;  // the whole mix on the sweep's tokens (mean; the check)
    double mix_kld_p99 = 0, mix_kld_p999 = 0;
    int64_t measured = 0, reused = 0;  // mixes measured now / found in the store
    double seconds = 0;                // measuring (0 when everything was stored)
};

// The name of the sweep job's artifact holding the measured mixes.
inline constexpr const char* kInteractionsArtifact = "interactions";

// `chosen`: the plan's (sweep unit, measured item) pairs (PlanOutcome::chosen_items).
InteractionStudy study_interactions(jobs::Store& store, int64_t job_id,
                                    const std::vector<std::pair<std::string, std::string>>& chosen,
                                    int n_pairs);

}  // namespace quantlens
