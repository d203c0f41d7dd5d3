// What eval and calibrate share: how a model reads the text (llama-perplexity's chunks of
// --ctx tokens, --batch chunks per forward pass) and which numerics it runs with.
#pragma once

#include <cstdint>

#include "engine/engine.h"
#include "model/model.h"

namespace quantlens::cli {

struct TextRunOptions {
    int64_t ctx = 512, chunks = 0, batch = 4;
    bool as_f16 = false, ggml_numerics = false, gpu = false;

    // The CPU engine's options for `model`: --as-f16 rounds only a Hugging Face model's
    // weights (a GGUF model's weights already are what llama.cpp reads).
    EngineOptions engine_options(const Model& model) const {
        EngineOptions eo;
        eo.f16_weights = as_f16 && model.source() == Model::Source::HuggingFace;
        eo.ggml_numerics = ggml_numerics;
        return eo;
    }
};

}  // namespace quantlens::cli
