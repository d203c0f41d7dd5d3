// The CUDA engine as a LogitsModel (engine/logits_model.h): what eval, verify and calibrate
// run on with --gpu. Weights are the model's in the engine's precision: F16 (a quantized
// file's dequantized values round with relative error ≤ 2^-11), or F32 with llama.cpp's
// numerics; quantized ones stay in their blocks when options.quantized_storage lists them.
// Batches larger than the engine's max_tokens are split by sequence.
#pragma once

#include <memory>

#include "engine/cuda/cuda_engine.h"
#include "engine/logits_model.h"

namespace quantlens {

class Model;

namespace cuda {

// Throws Error naming the model and the feature when the CUDA engine lacks one of its layer's
// features (check_layer_supported), or when no device is present. round_f16: as
// EngineOptions::f16_weights.
std::unique_ptr<LogitsModel> make_cuda_logits_model(const Model& model,
                                                    CudaEngineOptions options = {},
                                                    bool round_f16 = false);

}  // namespace cuda
}  // namespace quantlens
