// The sweep on the GPU: a SweepBackend (engine/sweep_backend.h) over CudaEngine.
//
// prepare() keeps every layer's input for every evaluation token on the GPU
// ([n_layers + 1][tokens, C] f32) and the reference log-probabilities of the scored positions
// ([n_scored, V] f32); evaluate(from) recomputes layers ≥ from from the cached input, and the
// log-softmax, KLD, NLL, top-1 and per-layer MSE reductions run on the GPU: only per-row
// scalars come back, summed on the host in row order (deterministic).
//
// Overrides (engine/sweep_backend.h): set_fake_quant_override runs the GPU kernels of
// fake_quant.h and reduces the weight error on the GPU (CudaEngine::override_with_type), so an
// item moves no tensor between host and device; set_override uploads values the CPU computed
// (importance-weighted or GPTQ-rounded quantizers, types without a kernel).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/ggml_type.h"
#include "engine/cuda/cuda_engine.h"
#include "engine/sweep_backend.h"

namespace quantlens {

class Engine;
class Model;

namespace cuda {

class CudaSweepBackend : public SweepBackend {
  public:
    virtual CudaEngine& engine() = 0;
    virtual void clear_overrides() = 0;
};

// Loads the model's weights (through Model::read_f32; round_f16 rounds them through F16 first,
// like SweepOptions::f16_weights) onto the GPU.
std::unique_ptr<CudaSweepBackend> make_cuda_sweep_backend(const Model& model,
                                                          CudaEngineOptions options = {},
                                                          bool round_f16 = false);
// Uploads the CPU engine's (possibly F16-rounded) original weights: no second read of the model.
std::unique_ptr<CudaSweepBackend> make_cuda_sweep_backend(const Engine& engine,
                                                          CudaEngineOptions options = {});
// Over an engine whose weights are already loaded (benchmarks: load_random_weights).
std::unique_ptr<CudaSweepBackend> make_cuda_sweep_backend(std::unique_ptr<CudaEngine> engine);

}  // namespace cuda
}  // namespace quantlens
