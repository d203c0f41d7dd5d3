// What an evaluation needs from a model it runs: next-token logits for batches of token
// sequences. The CPU Engine (engine.h) is one; the CUDA engine is another
// (engine/cuda/cuda_logits.h), so eval, verify and calibrate run on either without knowing which.
#pragma once

#include <cstdint>
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
};

}  // namespace quantlens
