// Test helper (header-only): llama-8m as the GPTQ tests measure it, with F16-rounded weights
// (as llama.cpp's F16 GGUF) and f32 compute, and the Hessians of its linears over a shared
// text.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "analysis/measure/chunks.h"
#include "analysis/measure/hessian.h"
#include "engine/engine.h"
#include "engine/tokenizer.h"
#include "model/model.h"
#include "support/test_data.h"

namespace quantlens::test_support {

// The model and an engine over it; the engine borrows the model, so keep both.
inline std::pair<std::unique_ptr<Model>, std::unique_ptr<Engine>> open_f16_llama_8m() {
    std::unique_ptr<Model> model = Model::open(shared_path("models/llama-8m"));
    auto engine = std::make_unique<Engine>(*model, EngineOptions{.f16_weights = true});
    return {std::move(model), std::move(engine)};
}

// Adds Σ xᵀx of every linear's input over the first `chunks` chunks of `ctx` tokens of the
// shared text `text` (e.g. "data/eval.txt") to `out`.
inline void run_text_hessians(Engine& engine, const Tokenizer& tok, const std::string& text,
                              int64_t ctx, int64_t chunks, HessianCollector& out) {
    run_hessians(engine, load_eval_chunks(tok, shared_path(text), ctx, chunks), out);
}

}  // namespace quantlens::test_support
