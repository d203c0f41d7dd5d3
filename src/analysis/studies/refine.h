// `plan --refine N` measured: analysis/plan/refine.h's search over a sweep job's units, each
// candidate a mix of the sweep's units at their items (analysis/studies/mixes.h: the sweep's
// own item code on its own tokens, stored in the job and reused by a later plan).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "analysis/plan/plan_job.h"
#include "analysis/plan/refine.h"
#include "analysis/studies/mixes.h"

namespace quantlens {

namespace jobs {
class Store;
}

struct RefineOutcome {
    RefineResult search;
    MixResult result;                  // the refined mix measured: mean and tails
    int64_t tokens = 0;                // of the sweep's text, per mix
    int64_t measured = 0, reused = 0;  // mixes measured now / found in the store
    double seconds = 0;
};

// space: the plan's units, options, the (sweep unit, item) pairs each option puts in a mix, the
// budget and the choice (PlanOutcome::space, GptqPlanOutcome::space). tokens > 0: the mixes are
// measured over the first `tokens` of the sweep's text instead of the sweep's own n_tokens (one
// more reference pass; less of the sample's noise for the search to select).
RefineOutcome refine_plan(jobs::Store& store, int64_t job_id, const PlanSpace& space, int rounds,
                          int64_t tokens = 0);

}  // namespace quantlens
