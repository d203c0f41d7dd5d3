// Held-out checking (analysis/studies/holdout.h): a verify window is shared with the tuning
// windows when a 32-token run of it (BOS positions excluded) appears in them, whatever the two
// sides' context lengths and offsets; distinct texts share nothing. The demo's two bundled
// texts are held out from each other under llama-8m's tokenizer.
#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

#include "analysis/measure/chunks.h"
#include "analysis/studies/holdout.h"
#include "engine/tokenizer.h"
#include "model/model.h"
#include "support/test_data.h"

using namespace quantlens;
using quantlens::test_support::shared_path;

namespace {

std::vector<int32_t> counting(int32_t from, int64_t n) {
    std::vector<int32_t> v(static_cast<size_t>(n));
    std::iota(v.begin(), v.end(), from);
    return v;
}

std::vector<int32_t> slice(const std::vector<int32_t>& v, int64_t from, int64_t n) {
    return {v.begin() + from, v.begin() + from + n};
}

}  // namespace

TEST(HeldOut, IdenticalWindowsAreAllShared) {
    const auto text = counting(0, 4 * 128);
    EXPECT_EQ(count_shared_windows(text, 128, text, 128), 4);
}

TEST(HeldOut, WindowsOfTheSameTextAtAnotherContextAndOffsetAreShared) {
    const auto text = counting(0, 10000);
    // The sweep saw tokens [0, 2048) in windows of 512; verify cuts [100, 100 + 8·256) into
    // windows of 256: windows 0..6 lie inside what the sweep saw (up to 1892 < 2048), window 7
    // holds [1892, 2148), whose first 156 tokens the sweep saw too: all 8 share text.
    EXPECT_EQ(count_shared_windows(slice(text, 0, 2048), 512, slice(text, 100, 8 * 256), 256), 8);
    // Verify windows that start past the sweep's last token share nothing.
    EXPECT_EQ(count_shared_windows(slice(text, 0, 2048), 512, slice(text, 2048, 4 * 256), 256), 0);
    // A verify window overlapping the sweep's end by fewer than 32 tokens (+ its BOS slot)
    // shares no 32-token run: [2030, 2286) overlaps [0, 2048) in 18 tokens.
    EXPECT_EQ(count_shared_windows(slice(text, 0, 2048), 512, slice(text, 2030, 256), 256), 0);
    // ... and by 40 tokens it does: [2008, 2264).
    EXPECT_EQ(count_shared_windows(slice(text, 0, 2048), 512, slice(text, 2008, 256), 256), 1);
}

TEST(HeldOut, DisjointTextsShareNothing) {
    EXPECT_EQ(count_shared_windows(counting(0, 2048), 512, counting(50000, 2048), 512), 0);
}

TEST(HeldOut, TheDemosBundledTextsAreHeldOutFromEachOther) {
    auto model = Model::open(shared_path("models/llama-8m"));
    const Tokenizer tok = Tokenizer::load(*model);
    const std::string calib = std::string(QL_SOURCE_DIR) + "/examples/data/calib-sample.txt";
    const std::string eval = std::string(QL_SOURCE_DIR) + "/examples/data/eval-sample.txt";
    const EvalChunks c = load_eval_chunks(tok, calib, 512, 0);
    const EvalChunks e = load_eval_chunks(tok, eval, 512, 0);
    ASSERT_GE(c.n_chunks, 4);  // the demo sweeps 2,048 tokens of it
    ASSERT_GE(e.n_chunks, 8);  // and verifies on 8 chunks of 512
    EXPECT_EQ(count_shared_windows(c.tokens, 512, e.tokens, 512), 0);
    EXPECT_EQ(count_shared_windows(e.tokens, 512, c.tokens, 512), 0);
    // The check does see the eval sample in itself, at verify's cut of the demo.
    EXPECT_EQ(count_shared_windows(e.tokens, 512, slice(e.tokens, 0, 8 * 512), 512), 8);
}
