// The CPU sweep backend over quantlens::Engine: prefix cache of every layer's input in
// host memory ([n_layers+1][n_chunks·n_ctx, C] floats) and reference log-probabilities at
// the scored positions ([n_scored, V] floats). Sequences are processed in small batches so
// the working set stays bounded.
#pragma once

#include <memory>

#include "engine/sweep_backend.h"

namespace quantlens {

class Engine;

std::unique_ptr<SweepBackend> make_cpu_sweep_backend(Engine& engine, int64_t batch = 4);

}  // namespace quantlens
