// Stage "measure" (ql_measure): how far a model's outputs move, computed one way everywhere.
//
// Promise: given a model (engine) and text, these measure without deciding anything —
//   chunks.h            the evaluation windows (n_ctx, BOS rule, overlap with other texts)
//   eval.h, kld.h       perplexity, log-prob files, KL divergence and its tail statistics
//   weight_metrics.h    the weight-space proxies (RMSE, SNR, imatrix-weighted error)
//   activation_stats.h  per-column activation statistics (the imatrix)
//   hessian.h           per-linear Hessians for GPTQ rounding
// Depends on the engine and the job store only; every later stage uses these numbers and
// never re-derives them.
#pragma once

#include "analysis/measure/activation_stats.h"
#include "analysis/measure/chunks.h"
#include "analysis/measure/eval.h"
#include "analysis/measure/hessian.h"
#include "analysis/measure/kld.h"
#include "analysis/measure/weight_metrics.h"
