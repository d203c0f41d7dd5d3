// Evaluation tokens in llama.cpp's perplexity layout: the text is tokenized (with BOS
// prepended when the tokenizer adds it, Tokenizer::add_bos()), cut into non-overlapping
// chunks of n_ctx tokens, the first token of every chunk is replaced by BOS (bos >= 0; -1:
// no BOS, nothing replaced), and positions n_ctx/2 .. n_ctx-2 are scored (each predicts the
// next token), i.e. the second half of each chunk. Throws Error when the text holds fewer
// tokens than one chunk.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/sweep_backend.h"

namespace quantlens {

class Tokenizer;

EvalChunks make_eval_chunks(const std::vector<int32_t>& tokens, int64_t n_ctx, int64_t max_chunks,
                            int32_t bos, const std::string& source);
// Reads and tokenizes `text_path`, then make_eval_chunks. max_chunks <= 0 means all.
EvalChunks load_eval_chunks(const Tokenizer& tokenizer, const std::string& text_path, int64_t n_ctx,
                            int64_t max_chunks);
// The same layout from the END of the text: its last max_chunks whole chunks (all it holds when
// fewer). Calibration that is fitted to its text (GPTQ's Hessians) reads these, so a sweep or
// verify that reads the same file from its start measures text the fit never saw, whenever the
// file is long enough to hold both.
EvalChunks load_tail_chunks(const Tokenizer& tokenizer, const std::string& text_path, int64_t n_ctx,
                            int64_t max_chunks);

// Whether two texts' windows share text, by content hash of token spans: the windows of
// `checked` (cut at checked_ctx) that hold a run of kSharedSpanTokens consecutive tokens (the
// first token of every window, BOS, left out) that also appears in a window of `reference`
// (cut at reference_ctx). Identical windows are always shared; so are windows cut at another
// context or offset from the same text, which a whole-window hash would miss. For verify's
// held-out check (analysis/studies/holdout.h) and the sweep's GPTQ text check.
inline constexpr int64_t kSharedSpanTokens = 32;
int64_t count_shared_windows(const std::vector<int32_t>& reference, int64_t reference_ctx,
                             const std::vector<int32_t>& checked, int64_t checked_ctx);

}  // namespace quantlens
