#include "analysis/measure/chunks.h"

#include <algorithm>
#include <unordered_set>

#include "core/error.h"
#include "core/hash.h"
#include "core/mmap_file.h"
#include "core/utf8.h"
#include "engine/tokenizer.h"

namespace quantlens {

EvalChunks make_eval_chunks(const std::vector<int32_t>& tokens, int64_t n_ctx, int64_t max_chunks,
                            int32_t bos, const std::string& source) {
    QL_CHECK(n_ctx >= 8, "{}: context of {} tokens is too short (need at least 8)", source, n_ctx);
    const int64_t available = static_cast<int64_t>(tokens.size()) / n_ctx;
    QL_CHECK(available >= 1,
             "{}: the text has {} tokens, fewer than one chunk of {} tokens; use a longer text "
             "or a smaller --ctx",
             source, tokens.size(), n_ctx);
    EvalChunks c;
    c.n_ctx = n_ctx;
    c.first_scored = n_ctx / 2;
    c.n_chunks = max_chunks > 0 ? std::min(available, max_chunks) : available;
    c.tokens.assign(tokens.begin(), tokens.begin() + c.n_chunks * n_ctx);
    if (bos >= 0)
        for (int64_t i = 0; i < c.n_chunks; ++i) c.tokens[static_cast<size_t>(i * n_ctx)] = bos;
    return c;
}

namespace {

// The text's tokens as load_eval_chunks cuts them, BOS first when the tokenizer adds it.
std::vector<int32_t> read_text_tokens(const Tokenizer& tokenizer, const std::string& text_path) {
    const std::string text = read_utf8_text_file(text_path);
    QL_CHECK(!text.empty(), "{}: the text file is empty", text_path);
    const bool bos = tokenizer.add_bos();
    QL_CHECK(!bos || tokenizer.bos_id() >= 0,
             "{}: the tokenizer adds BOS (add_bos_token) but names no BOS token", text_path);
    return tokenizer.encode(text, bos);
}

int32_t chunk_bos(const Tokenizer& tokenizer) {
    return tokenizer.add_bos() ? tokenizer.bos_id() : -1;
}

}  // namespace

EvalChunks load_eval_chunks(const Tokenizer& tokenizer, const std::string& text_path, int64_t n_ctx,
                            int64_t max_chunks) {
    return make_eval_chunks(read_text_tokens(tokenizer, text_path), n_ctx, max_chunks,
                            chunk_bos(tokenizer), text_path);
}

EvalChunks load_tail_chunks(const Tokenizer& tokenizer, const std::string& text_path, int64_t n_ctx,
                            int64_t max_chunks) {
    std::vector<int32_t> tokens = read_text_tokens(tokenizer, text_path);
    int64_t keep = static_cast<int64_t>(tokens.size()) / std::max<int64_t>(n_ctx, 1);
    if (max_chunks > 0) keep = std::min(keep, max_chunks);
    if (keep > 0) tokens.erase(tokens.begin(), tokens.end() - keep * n_ctx);
    return make_eval_chunks(tokens, n_ctx, max_chunks, chunk_bos(tokenizer), text_path);
}

int64_t count_shared_windows(const std::vector<int32_t>& reference, int64_t reference_ctx,
                             const std::vector<int32_t>& checked, int64_t checked_ctx) {
    QL_ASSERT(reference_ctx >= 2 && checked_ctx >= 2);
    const int64_t span = std::min({kSharedSpanTokens, reference_ctx - 1, checked_ctx - 1});
    const auto span_hash = [&](const int32_t* tokens) {
        return hash_bytes(
            {reinterpret_cast<const uint8_t*>(tokens), static_cast<size_t>(span) * 4});
    };
    std::unordered_set<std::string> spans;
    const int64_t n_reference = static_cast<int64_t>(reference.size()) / reference_ctx;
    for (int64_t w = 0; w < n_reference; ++w)
        for (int64_t i = 1; i + span <= reference_ctx; ++i)
            spans.insert(span_hash(reference.data() + w * reference_ctx + i));
    int64_t shared = 0;
    const int64_t n_checked = static_cast<int64_t>(checked.size()) / checked_ctx;
    for (int64_t w = 0; w < n_checked; ++w)
        for (int64_t i = 1; i + span <= checked_ctx; ++i)
            if (spans.count(span_hash(checked.data() + w * checked_ctx + i))) {
                ++shared;
                break;
            }
    return shared;
}

}  // namespace quantlens
