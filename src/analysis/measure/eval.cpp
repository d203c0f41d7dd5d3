// Perplexity / KL-divergence evaluation: see eval.h for the chunking convention.
#include "analysis/measure/eval.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>

#include "core/error.h"
#include "core/parallel.h"
#include "core/profile.h"
#include "core/progress.h"
#include "engine/engine.h"
#ifdef QL_HAVE_CUDA
#include "engine/cuda/cuda_logits.h"
#endif
#include "engine/tokenizer.h"
#include "model/model.h"

namespace quantlens {

EvalTokens make_eval_tokens(const Tokenizer& tokenizer, const std::string& text,
                            const std::string& source, const EvalOptions& options) {
    const int64_t n_ctx = options.n_ctx;
    QL_CHECK(n_ctx >= 8, "--ctx {}: a context of at least 8 tokens is needed", n_ctx);
    // llama-perplexity: BOS first and at every chunk start only when the vocabulary adds it.
    const bool bos = tokenizer.add_bos();
    QL_CHECK(!bos || tokenizer.bos_id() >= 0,
             "{}: the tokenizer adds BOS (add_bos_token) but names no BOS token", source);
    const std::vector<int32_t> all = tokenizer.encode(text, bos);
    QL_CHECK(static_cast<int64_t>(all.size()) >= 2 * n_ctx,
             "{}: the text tokenizes to {} tokens; perplexity with a context of {} needs at least "
             "{} (2·n_ctx, as llama-perplexity)",
             source, all.size(), n_ctx, 2 * n_ctx);
    EvalTokens e;
    e.n_ctx = n_ctx;
    e.n_chunks = static_cast<int64_t>(all.size()) / n_ctx;
    if (options.max_chunks > 0) e.n_chunks = std::min(e.n_chunks, options.max_chunks);
    e.tokens.assign(all.begin(), all.begin() + e.n_chunks * n_ctx);
    if (bos)
        for (int64_t c = 0; c < e.n_chunks; ++c) e.tokens[c * n_ctx] = tokenizer.bos_id();
    return e;
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void check_base_file(const LogitsFile& file, const EvalTokens& chunks, int64_t vocab) {
    const LogitsHeader& h = file.header();
    QL_CHECK(h.n_ctx == chunks.n_ctx && h.first == chunks.first(),
             "{}: base log-probs were computed with a context of {}, this evaluation uses {}",
             file.path(), h.n_ctx, chunks.n_ctx);
    QL_CHECK(h.n_vocab == vocab, "{}: base vocabulary has {} tokens, the model has {}", file.path(),
             h.n_vocab, vocab);
    QL_CHECK(h.n_chunks >= chunks.n_chunks, "{}: holds {} chunks, {} requested", file.path(),
             h.n_chunks, chunks.n_chunks);
    const auto base_tokens = file.tokens().first(chunks.tokens.size());
    QL_CHECK(std::equal(base_tokens.begin(), base_tokens.end(), chunks.tokens.begin()),
             "{}: the base was evaluated on different tokens (another text or tokenizer)",
             file.path());
}

}  // namespace

#ifdef QL_HAVE_CUDA
constexpr int64_t kQuantizedGpuBatchTokens = 2048;
#endif

std::unique_ptr<LogitsModel> make_logits_model(const Model& model, const EngineOptions& options,
                                               bool gpu, const std::string& command) {
    if (!gpu) return std::make_unique<Engine>(model, options);
#ifdef QL_HAVE_CUDA
    // F16 storage holds F16-rounded weights exactly; llama.cpp's numerics need F32 storage.
    cuda::CudaEngineOptions o;
    o.precision = options.ggml_numerics ? cuda::Precision::F32 : cuda::Precision::F16;
    o.ggml_numerics = options.ggml_numerics;
    // A quantized file stays in its blocks on the GPU, so memory follows the file's size; the
    // batch then shrinks too (an 8B's activations at 8,192 tokens are ~1.5 GB, a quarter of
    // its Q4_K_M file), which costs little: each pass re-dequantizes the weights at ~3 TB/s.
    o.quantized_storage = cuda::quantized_storage_types(model);
    if (!o.quantized_storage.empty()) o.max_tokens = kQuantizedGpuBatchTokens;
    return cuda::make_cuda_logits_model(model, o, options.f16_weights);
#else
    fail("{} --gpu: this quantlens was built without CUDA (configure with -DQUANTLENS_CUDA=ON)",
         command);
#endif
}

EvalResult evaluate(const LogitsModel& engine, const EvalTokens& chunks, const EvalOptions& options,
                    EvalBase base, const std::string& save_logits) {
    const int64_t n_ctx = chunks.n_ctx, first = chunks.first(), S = chunks.scored_per_chunk();
    const int64_t V = engine.vocab(), rows_out = n_ctx - first;  // head rows per sequence
    const int64_t batch = std::max<int64_t>(1, options.batch);
    if (base.engine)
        QL_CHECK(base.engine->vocab() == V, "base model {} has a vocabulary of {}, {} has {}",
                 base.engine->source_path(), base.engine->vocab(), engine.source_path(), V);
    if (base.logits) check_base_file(*base.logits, chunks, V);
    const bool with_base = base.engine || base.logits;

    std::unique_ptr<LogitsWriter> writer;
    if (!save_logits.empty()) {
        LogitsHeader h{static_cast<uint32_t>(n_ctx), static_cast<uint32_t>(V),
                       static_cast<uint32_t>(chunks.n_chunks), static_cast<uint32_t>(first)};
        writer = std::make_unique<LogitsWriter>(save_logits, h, chunks.tokens,
                                                options.save_logits_overwrite);
    }

    if (!options.progress) Progress::set_enabled(false);
    Progress progress("eval", chunks.n_chunks * n_ctx, "tok");
    EvalAccumulator acc;
    EvalResult result;
    result.n_ctx = n_ctx;
    result.n_chunks = chunks.n_chunks;
    std::vector<ScoredToken> scored;
    std::vector<float> logp, base_logp;
    std::vector<int64_t> base_top;
    const auto t_loop = std::chrono::steady_clock::now();
    for (int64_t c0 = 0; c0 < chunks.n_chunks; c0 += batch) {
        const int64_t B = std::min(batch, chunks.n_chunks - c0);
        const std::span<const int32_t> tokens(chunks.tokens.data() + c0 * n_ctx, B * n_ctx);
        auto t0 = std::chrono::steady_clock::now();
        if (!with_base && !writer) {  // PPL alone: the GPU scores where its logits are
            if (std::optional<std::vector<float>> nll =
                    engine.next_token_nll(tokens, B, n_ctx, first, S)) {
                result.seconds += seconds_since(t0);
                for (const float x : *nll) acc.add_nll(x);
                progress.advance(B * n_ctx);
                continue;
            }
        }
        const std::vector<float> logits =
            engine.forward(tokens, B, n_ctx, first);  // [B, rows_out, V]
        result.seconds += seconds_since(t0);

        const int64_t R = B * S;  // scored rows in this batch
        // row r = (b, j): logits row b·rows_out + j predicts token first + j + 1 of chunk b.
        auto logits_row = [&](const std::vector<float>& l, int64_t r) {
            return l.data() + ((r / S) * rows_out + r % S) * V;
        };
        auto target = [&](int64_t r) { return tokens[(r / S) * n_ctx + first + r % S + 1]; };

        if (with_base) {
            base_logp.resize(R * V);
            base_top.resize(R);
            if (base.engine) {
                t0 = std::chrono::steady_clock::now();
                const std::vector<float> bl = base.engine->forward(tokens, B, n_ctx, first);
                result.base_seconds += seconds_since(t0);
                parallel_for(R, [&](size_t begin, size_t end) {
                    for (size_t r = begin; r < end; ++r)
                        base_top[r] =
                            log_softmax_row(logits_row(bl, r), V, base_logp.data() + r * V);
                });
            } else {
                const uint64_t row0 = static_cast<uint64_t>(c0) * S;
                parallel_for(R, [&](size_t begin, size_t end) {
                    for (size_t r = begin; r < end; ++r)
                        base_top[r] = base.logits->row(row0 + r, base_logp.data() + r * V);
                });
            }
        }
        scored.assign(R, ScoredToken{});
        parallel_for(R, [&](size_t begin, size_t end) {
            for (size_t r = begin; r < end; ++r) {
                const auto rr = static_cast<int64_t>(r);
                if (with_base) {
                    scored[r] = score_token(logits_row(logits, rr), base_logp.data() + rr * V,
                                            base_top[r], V, target(rr));
                } else {
                    scored[r].nll =
                        static_cast<float>(token_nll(logits_row(logits, rr), V, target(rr)));
                }
            }
        });
        // Accumulate serially, in order, so results do not depend on the thread count.
        for (const ScoredToken& t : scored) with_base ? acc.add(t) : acc.add_nll(t.nll);
        if (writer) {
            logp.resize(R * V);
            parallel_for(R, [&](size_t begin, size_t end) {
                for (size_t r = begin; r < end; ++r)
                    log_softmax_row(logits_row(logits, static_cast<int64_t>(r)), V,
                                    logp.data() + r * V);
            });
            for (int64_t r = 0; r < R; ++r) writer->add_row(logp.data() + r * V);
        }
        progress.advance(B * n_ctx);
    }
    progress.finish();
    if (profiling())
        std::fprintf(stderr,
                     "profile: eval of %s: %.1f s; forward %.1f s, base forward %.1f s, the rest "
                     "(transfers, log-softmax and scoring on the host) %.1f s\n",
                     engine.source_path().c_str(), seconds_since(t_loop), result.seconds,
                     result.base_seconds,
                     seconds_since(t_loop) - result.seconds - result.base_seconds);
    if (writer) writer->close();
    result.ppl = acc.ppl();
    if (with_base) result.kld = acc.kld();
    result.tokens_per_second = result.seconds > 0 ? chunks.n_chunks * n_ctx / result.seconds : 0;
    return result;
}

}  // namespace quantlens
