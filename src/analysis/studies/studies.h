// Stage "studies" (ql_studies): the questions a user asks of whole models and recipes.
//
// Promise: each study composes the lower stages and stores its result as a job —
//   calibrate.h            imatrix collection (llama.cpp's .dat / GGUF imatrix)
//   compare.h              two models side by side, with per-tensor attribution
//   verify.h               recipe vs presets, measured on held-out text
//   audit.h                a zoo of models' sensitivity profiles compared by role and depth
//   awq.h, weight_diagnostics.h   `diagnose`: outlier channels, AWQ-style scales
// The top of the analysis pipeline: nothing below includes it.
#pragma once

#include "analysis/studies/audit.h"
#include "analysis/studies/awq.h"
#include "analysis/studies/calibrate.h"
#include "analysis/studies/compare.h"
#include "analysis/studies/verify.h"
#include "analysis/studies/weight_diagnostics.h"
