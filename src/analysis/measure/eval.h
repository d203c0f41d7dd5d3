// Perplexity and KL divergence of a model on a text, with llama.cpp's perplexity
// convention (tools/perplexity, the default non-strided mode), so figures compare with
// llama-perplexity's:
//   - the whole text is tokenized, with BOS prepended when the tokenizer adds one
//     (Tokenizer::add_bos(): add_bos_token as llama.cpp's converter and loader decide it);
//   - it needs at least 2·n_ctx tokens (llama.cpp's rule); n_chunks = min(asked, ⌊n/n_ctx⌋);
//   - chunk i is tokens[i·n_ctx, (i+1)·n_ctx) with its first token replaced by BOS when the
//     tokenizer adds BOS (no BOS anywhere otherwise);
//   - positions first = n_ctx/2 .. n_ctx−2 are scored, each predicting the next token:
//     n_ctx−1−n_ctx/2 tokens per chunk (255 for 512).
// The base for KL divergence is either a second engine run on the same chunks or a
// log-prob file written earlier by --save-logits (kld.h documents the format).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "analysis/measure/kld.h"

namespace quantlens {

class LogitsModel;
class Model;
class Tokenizer;
struct EngineOptions;

struct EvalOptions {
    int64_t n_ctx = 512;
    int64_t max_chunks = 0;  // 0 = every full chunk
    int64_t batch = 4;       // sequences per forward pass
    bool progress = true;
    Overwrite save_logits_overwrite = Overwrite::refuse;  // an existing --save-logits file
};

// Chunks in evaluation order: n_chunks × n_ctx tokens (BOS first in each when add_bos).
struct EvalTokens {
    int64_t n_ctx = 0, n_chunks = 0;
    std::vector<int32_t> tokens;
    int64_t first() const { return n_ctx / 2; }
    int64_t scored_per_chunk() const { return n_ctx - 1 - n_ctx / 2; }
};

// Tokenizes `text` (source names it in errors) and cuts the chunks.
EvalTokens make_eval_tokens(const Tokenizer& tokenizer, const std::string& text,
                            const std::string& source, const EvalOptions& options);

struct EvalResult {
    int64_t n_ctx = 0, n_chunks = 0;
    PplStats ppl;
    std::optional<KldStats> kld;   // when a base was given
    double seconds = 0;            // the evaluated model's forward passes only
    double tokens_per_second = 0;  // n_chunks·n_ctx / seconds
    double base_seconds = 0;       // the base engine's forward passes (if any)
};

struct EvalBase {
    const LogitsModel* engine = nullptr;  // run on the same chunks, or
    const LogitsFile* logits = nullptr;   // read from a file (its tokens must match)
};

// The evaluator of `model`: the CPU engine with `options`, or with `gpu` the CUDA engine
// (F16 storage, engine/cuda/cuda_logits.h). `command` names the caller in refusals: --gpu
// without a CUDA build, and --gpu with ggml_numerics (llama.cpp's matmul-input rounding is
// not implemented on the GPU, so it would measure something else).
std::unique_ptr<LogitsModel> make_logits_model(const Model& model, const EngineOptions& options,
                                               bool gpu, const std::string& command);

// save_logits: write the evaluated model's log-probs to this path ("" = don't).
EvalResult evaluate(const LogitsModel& engine, const EvalTokens& chunks, const EvalOptions& options,
                    EvalBase base = {}, const std::string& save_logits = "");

}  // namespace quantlens
