// What an evaluation needs from a model it runs: next-token logits for batches of token
// sequences. The CPU Engine (engine.h) is one; the CUDA engine is another
// (engine/cuda/cuda_logits.h), so eval, verify and calibrate run on either without knowing which.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace quantlens {

class LogitsModel {
  public:
    virtual ~LogitsModel() = default;
    virtual int64_t vocab() const = 0;
    // The file or folder the weights came from (for messages).
    virtual std::string source_path() const = 0;
    // tokens[B*T] → logits[B*(T-t0), V] for positions t0..T-1 of each sequence (rows ordered
    // by sequence, then position). Throws Error on an id outside the vocabulary.
    virtual std::vector<float> forward(std::span<const int32_t> tokens, int64_t B, int64_t T,
                                       int64_t t0 = 0) const = 0;
    // −log p of each next token for rows t0..t0+S−1 of each sequence (t0 + S < T): out[b·S + s]
    // scores tokens[b·T + t0 + s + 1], as kld.h's token_nll would from forward()'s logits.
    // A model that scores where its logits are (the GPU) returns them; nullopt: score forward().
    virtual std::optional<std::vector<float>> next_token_nll(std::span<const int32_t> tokens,
                                                             int64_t B, int64_t T, int64_t t0,
                                                             int64_t S) const {
        return std::nullopt;
    }
};

}  // namespace quantlens
