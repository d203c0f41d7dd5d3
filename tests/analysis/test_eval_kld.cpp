// KL divergence of llama.cpp's own Q4_K_M file against the full-precision model, with the
// full reference setup (100 chunks of 512 of eval.txt; docs/REFERENCE-FIGURES.md): llama.cpp
// measured mean KLD 0.019369 and same top-1 91.83 % against its F16 conversion.
// Acceptance: KLD within ±3 %, top-1 within ±0.5 points. ~40 CPU-seconds (two models).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include "analysis/measure/eval.h"
#include "core/mmap_file.h"
#include "core/progress.h"
#include "engine/engine.h"
#include "engine/tokenizer.h"
#include "model/model.h"
#include "support/test_data.h"

namespace quantlens {
namespace {

using quantlens::test_support::shared_dir;

constexpr double kLlamaCppKld = 0.019369, kKldRelTol = 0.03;
constexpr double kLlamaCppTop1Pct = 91.83, kTop1Points = 0.5;
// llama-perplexity on the same Q4_K_M file: PPL 50.994 in REFERENCE-FIGURES.md (issue 28's
// bar: within 0.1 %). llama.cpp c392e50's x86 AVX2 build (bench/RESULTS.md, issue 28) gives
// 51.0086 on this file and machine today, and with ggml's float order in every op
// (engine/ggml_ops.h) our logits are that build's bit for bit: equal to print precision.
constexpr double kLlamaCppQ4KMPpl = 50.994, kPplRelTol = 0.001;
constexpr double kLlamaCppAvx2Q4KMPpl = 51.0086, kPrintPrecision = 5e-5;

TEST(EvalKld, Q4KMAgainstHfMatchesLlamaCpp) {
    Progress::set_enabled(false);
    const auto quant = Model::open(shared_dir() + "/models/llama-8m-Q4_K_M.gguf");
    const auto base = Model::open(shared_dir() + "/models/llama-8m");
    EvalOptions o;
    o.max_chunks = 100;
    const EvalTokens chunks = make_eval_tokens(
        Tokenizer::load(*quant), read_text_file(shared_dir() + "/data/eval.txt"), "eval.txt", o);
    // The GGUF's tokenizer and the HF tokenizer.json give the same chunks.
    EXPECT_EQ(make_eval_tokens(Tokenizer::load(*base),
                               read_text_file(shared_dir() + "/data/eval.txt"), "eval.txt", o)
                  .tokens,
              chunks.tokens);
    // llama.cpp's base was the F16 GGUF, and its CPU matmuls round activations (Q8_K for
    // K-quant weights, F16 for F16 weights and the KV cache): without those numerics the
    // KLD comes out 4 % lower (0.01857), so the comparison uses them. On the GGUF they are
    // ggml's quantized dot products themselves (the weights are read in place).
    EngineOptions qo, bo;
    qo.ggml_numerics = bo.ggml_numerics = true;
    bo.f16_weights = true;
    Engine q(*quant, qo), b(*base, bo);
    const EvalResult r = evaluate(q, chunks, o, {&b, nullptr});
    ASSERT_TRUE(r.kld);
    EXPECT_EQ(r.kld->count, 25500);
    EXPECT_NEAR(r.kld->kld_mean, kLlamaCppKld, kKldRelTol * kLlamaCppKld);
    EXPECT_NEAR(100.0 * r.kld->same_top, kLlamaCppTop1Pct, kTop1Points);
    EXPECT_TRUE(q.reads_in_place("blk.0.ffn_up.weight"));
    EXPECT_NEAR(r.ppl.ppl, kLlamaCppQ4KMPpl, kPplRelTol * kLlamaCppQ4KMPpl);
    EXPECT_NEAR(r.ppl.ppl, kLlamaCppAvx2Q4KMPpl, kPrintPrecision);
    std::printf("KLD %.6f ± %.6f, same top-1 %.2f %%, RMS dp %.2f %%, PPL %.3f vs base %.3f\n",
                r.kld->kld_mean, r.kld->kld_err, 100 * r.kld->same_top, 100 * r.kld->rms_dp,
                r.kld->ppl, r.kld->ppl_base);
}

}  // namespace
}  // namespace quantlens
