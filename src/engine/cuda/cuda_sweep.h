// The sweep on the GPU: a SweepBackend (analysis/sweep_backend.h) over CudaEngine.
//
// prepare() keeps every layer's input for every evaluation token on the GPU
// ([n_layers + 1][tokens, C] f32) and the reference log-probabilities of the scored positions
// ([n_scored, V] f32); evaluate(from) recomputes layers ≥ from from the cached input, and the
// log-softmax, KLD, NLL, top-1 and per-layer MSE reductions run on the GPU: only per-row
// scalars come back, summed on the host in row order (deterministic).
//
// Overrides: the sweep installs them on the backend itself (set_override with the CPU
// fake-quantized floats, or override_with_type for the GPU kernels of fake_quant.h, which
// returns false when the type has none), then calls evaluate.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "analysis/sweep_backend.h"
#include "core/ggml_type.h"
#include "engine/cuda/cuda_engine.h"

namespace quantlens {

class Engine;
class Model;

namespace cuda {

class CudaSweepBackend : public SweepBackend {
  public:
    virtual CudaEngine& engine() = 0;
    virtual void set_override(const std::string& name, const std::vector<float>& values) = 0;
    virtual bool override_with_type(const std::string& name, GgmlType type) = 0;
    virtual void clear_override(const std::string& name) = 0;
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

// For the sweep driver: forwards an override (values) or its removal (nullptr) to `backend`
// when it is a CUDA backend; returns false for other backends.
bool forward_override(SweepBackend& backend, const std::string& name,
                      const std::vector<float>* values);

}  // namespace cuda
}  // namespace quantlens
