// Stage "plan" (ql_plan): from measured sensitivities to a recipe for a size budget.
//
// Promise: the knapsack over (tensor, type) options with the frontier and the knee, and the
// plan job that turns a sweep into a recipe whose size is the size of the file it writes —
//   plan.h       the allocation itself (pure, no I/O)
//   plan_job.h   reading a sweep, pins, the interaction factor, the recipe (formats/recipe)
// Depends on write (the exact GGUF header size) and below; never on the sweep's code, only on
// the rows it stored.
#pragma once

#include "analysis/plan/plan.h"
#include "analysis/plan/plan_job.h"
