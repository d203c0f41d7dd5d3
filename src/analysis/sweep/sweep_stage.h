// Stage "sweep" (ql_sweep): the per-tensor × per-type sensitivity measurement.
//
// Promise: every item (unit × type) is measured by one route, resumably, into the job store —
//   sweep.h               the sweep job: items, units, the summary rows it stores
//   sweep_cpu.h           the CPU implementation of engine/sweep_backend.h (the CUDA one is in
//                         engine/cuda); make_sweep_backend in sweep.cpp is the one chooser
//   sweep_shard.h         --shard i/N and the item scheduler shared with MPI (mpi/)
//   placement.h           granularity "placement": presets as units
//   weight_error_sweep.h  the cheap weight-space sweep (`weight-error`)
// Depends on measure and write (GPTQ rounding of an item) and below.
#pragma once

#include "analysis/sweep/placement.h"
#include "analysis/sweep/sweep.h"
#include "analysis/sweep/sweep_cpu.h"
#include "analysis/sweep/sweep_shard.h"
#include "analysis/sweep/weight_error_sweep.h"
