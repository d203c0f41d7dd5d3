// Hostile-input catalogue (issue 20 items 4, 5, 6 and 11): each test is one reproduction from
// the audit, which on the old code gave a wrong number, a silent no-op or an error that did
// not say where. Read top to bottom, the file is the list.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "analysis/sweep/sweep.h"
#include "core/error.h"
#include "core/mmap_file.h"
#include "formats/gguf.h"
#include "formats/imatrix.h"
#include "jobs/store.h"
#include "support/cli_run.h"

namespace quantlens {
namespace {

namespace fs = std::filesystem;
using cli_testing::contains;
using cli_testing::fresh_dir;
using cli_testing::run_quiet;
using cli_testing::shared_path;

const std::string kQ4 = shared_path("models/llama-8m-Q4_K_M.gguf");
const std::string kModel = shared_path("models/llama-8m");
const std::string kEval = shared_path("data/eval.txt");
const std::string kImatrix = shared_path("data/llama-8m.llamacpp-imatrix.dat");

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
}

// ---- 4. Bad tensors ----------------------------------------------------------------------

TEST(BadTensors, OverlappingGgufTensorsRefused) {
    GgufWriter w;
    std::vector<float> a(16, 1.0f), b(8, 2.0f);
    w.add_tensor("first.weight", {16}, GgmlType::F32,
                 {reinterpret_cast<const uint8_t*>(a.data()), a.size() * 4});
    w.add_tensor("second.weight", {8}, GgmlType::F32,
                 {reinterpret_cast<const uint8_t*>(b.data()), b.size() * 4});
    std::vector<uint8_t> bytes = w.serialize();
    EXPECT_NO_THROW(GgufFile::parse(bytes, "ok.gguf"));
    // second.weight's info: name, u32 n_dims, u64 ne[0], u32 type, then its u64 offset (64).
    const std::string name = "second.weight";
    const auto at = std::search(bytes.begin(), bytes.end(), name.begin(), name.end());
    ASSERT_NE(at, bytes.end());
    const size_t offset_pos = static_cast<size_t>(at - bytes.begin()) + name.size() + 4 + 8 + 4;
    uint64_t offset;
    std::memcpy(&offset, bytes.data() + offset_pos, 8);
    ASSERT_EQ(offset, 64u);
    offset = 32;  // aligned, but now sharing bytes 32..63 with first.weight
    std::memcpy(bytes.data() + offset_pos, &offset, 8);
    try {
        GgufFile::parse(bytes, "overlap.gguf");
        FAIL() << "overlapping tensors accepted";
    } catch (const Error& e) {
        EXPECT_TRUE(contains(e.what(), "first.weight") && contains(e.what(), "second.weight") &&
                    contains(e.what(), "overlap"))
            << e.what();
    }
}

// llama-8m's Q4_K_M file with every value of one F32 tensor replaced.
std::string gguf_with_poisoned_tensor(const std::string& dir, const std::string& tensor, float v) {
    const GgufFile src = GgufFile::open(kQ4);
    GgufWriter w;
    w.copy_from(src);
    std::vector<uint8_t> bytes = w.serialize();
    const GgufFile parsed = GgufFile::parse(bytes, "copy");
    const GgufTensorInfo& t = parsed.tensor(tensor);
    EXPECT_EQ(t.type, GgmlType::F32);
    const size_t at = parsed.data_offset() + t.offset;
    for (int64_t i = 0; i < t.n_elements(); ++i) std::memcpy(bytes.data() + at + 4 * i, &v, 4);
    const std::string path = dir + "/poisoned.gguf";
    write_bytes(path, bytes);
    return path;
}

TEST(BadTensors, NanWeightsRefusedNamingTheTensor) {
    const std::string dir = fresh_dir("nan");
    for (const float v :
         {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        const std::string path = gguf_with_poisoned_tensor(dir, "blk.3.ffn_norm.weight", v);
        const auto r = run_quiet("eval " + path + " --text " + kEval + " --chunks 1");
        EXPECT_NE(r.code, 0) << r.out;  // was: "PPL nan", exit 0
        EXPECT_TRUE(contains(r.out, "blk.3.ffn_norm.weight")) << r.out;
        EXPECT_FALSE(contains(r.out, "PPL")) << r.out;
    }
}

// ---- 5. imatrix problems ------------------------------------------------------------------

std::vector<ImatrixEntry> real_imatrix_entries() {
    std::vector<ImatrixEntry> entries = Imatrix::load(kImatrix).entries();
    for (auto& e : entries)  // loaded legacy counts are calls; the writer takes tokens
        for (auto& c : e.counts) c *= 512;
    return entries;
}

std::string write_imatrix_file(const std::string& dir, const std::vector<ImatrixEntry>& entries) {
    const std::string path = dir + "/im.dat";
    write_imatrix_legacy(path, entries, {512, 10, {"calib.txt"}});
    return path;
}

TEST(BadImatrix, MatchingNoTensorRefused) {
    const std::string dir = fresh_dir("im-none");
    ImatrixEntry e;
    e.name = "model.layers.0.self_attn.q_proj.weight";  // HF names: another tool's imatrix
    e.n_values = 256;
    e.counts = {512};
    e.values.assign(256, 1.0f);
    const auto r = run_quiet("quantize " + kModel + " --preset Q4_K_M --imatrix " +
                             write_imatrix_file(dir, {e}) + " -o " + dir + "/out.gguf");
    EXPECT_NE(r.code, 0);  // was: quantized exactly as without an imatrix
    EXPECT_TRUE(contains(r.out, "none of its 1 entries")) << r.out;
    EXPECT_FALSE(fs::exists(dir + "/out.gguf"));
}

TEST(BadImatrix, AllZeroRefused) {
    const std::string dir = fresh_dir("im-zero");
    auto entries = real_imatrix_entries();
    for (auto& e : entries) std::fill(e.values.begin(), e.values.end(), 0.0f);
    const auto r = run_quiet("quantize " + kModel + " --preset Q4_K_M --imatrix " +
                             write_imatrix_file(dir, entries) + " -o " + dir + "/out.gguf");
    EXPECT_NE(r.code, 0);  // was: a broken model (PPL 7,527 vs 65)
    EXPECT_TRUE(contains(r.out, "every importance value is zero")) << r.out;
}

TEST(BadImatrix, MisspelledEntryListedByName) {
    const std::string dir = fresh_dir("im-typo");
    auto entries = real_imatrix_entries();
    for (auto& e : entries)
        if (e.name == "blk.2.ffn_down.weight") e.name = "blk.2.ffn_dwon.weight";
    const auto r = run_quiet("quantize " + kModel + " --preset Q8_0 --imatrix " +
                             write_imatrix_file(dir, entries) + " -o " + dir + "/out.gguf");
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_TRUE(contains(r.out, "blk.2.ffn_dwon.weight")) << r.out;  // the unmatched entry
    EXPECT_TRUE(contains(r.out, "blk.2.ffn_down.weight")) << r.out;  // the uncovered tensor
}

// ---- 6. Input checks ----------------------------------------------------------------------

TEST(BadInputs, SweepTokensBelowOneContextRefusedBeforeTheJob) {
    const std::string dir = fresh_dir("tokens");
    for (const char* n : {"100", "0", "-5"}) {
        const auto r = run_quiet("sweep " + kModel + " --eval " + kEval + " --tokens " + n +
                                 " --types Q4_K --store " + dir + "/s.sqlite");
        EXPECT_NE(r.code, 0) << n;  // was: silently the whole text
        EXPECT_TRUE(contains(r.out, "less than one context")) << r.out;
    }
    jobs::Store store(dir + "/s.sqlite");
    EXPECT_TRUE(store.list_jobs().empty());
}

TEST(BadInputs, RequantizingNeedsAllowRequantize) {
    const std::string dir = fresh_dir("requant");
    auto r = run_quiet("quantize " + kQ4 + " --preset Q8_0 -o " + dir + "/q8.gguf");
    EXPECT_NE(r.code, 0);
    EXPECT_TRUE(contains(r.out, "--allow-requantize")) << r.out;
    EXPECT_FALSE(fs::exists(dir + "/q8.gguf"));
    r = run_quiet("quantize " + kQ4 + " --preset Q8_0 --allow-requantize -o " + dir + "/q8.gguf");
    EXPECT_EQ(r.code, 0) << r.out;
}

TEST(BadInputs, CompareRefusesQuantizedFullPrecisionSide) {
    const auto r = run_quiet("compare " + kQ4 + " " + kQ4 + " --text " + kEval + " --chunks 1");
    EXPECT_NE(r.code, 0);
    EXPECT_TRUE(contains(r.out, "full-precision side")) << r.out;
}

TEST(BadInputs, RecipeForAnotherModelRefused) {
    const std::string dir = fresh_dir("recipe-hash");
    std::ofstream(dir + "/r.json") << R"({"format": "quantlens-recipe", "version": 1,
        "model": "some/other-model", "model_hash": "0123456789abcdef",
        "default_type": "Q8_0", "tensors": {}})";
    auto r = run_quiet("quantize " + kModel + " --recipe " + dir + "/r.json -o " + dir + "/o.gguf");
    EXPECT_NE(r.code, 0);
    EXPECT_TRUE(contains(r.out, "0123456789abcdef") && contains(r.out, "--allow-other-model"))
        << r.out;
    r = run_quiet("quantize " + kModel + " --recipe " + dir + "/r.json --allow-other-model -o " +
                  dir + "/o.gguf");
    EXPECT_EQ(r.code, 0) << r.out;
}

// The command fails, and its message names `what`.
void expect_refused_naming(const std::string& command, const std::string& what) {
    const auto r = run_quiet(command);
    EXPECT_NE(r.code, 0) << command;
    EXPECT_TRUE(contains(r.out, what)) << r.out;
}

// Runs a real sweep job (job 1) of tiny-qwen2 (2 layers: well under a second) over `types`
// into a fresh store; returns the " --store PATH" option naming it, for the plans to refuse.
std::string store_with_tiny_sweep(const std::string& dir, const std::string& types) {
    const std::string store = " --store " + dir + "/s.sqlite";
    const auto r =
        run_quiet("sweep " + shared_path("models/tiny-qwen2") + " --eval " + kEval +
                  " --tokens 512 --types " + types + " --granularity class --no-uniform" + store);
    EXPECT_EQ(r.code, 0) << r.out;
    return store;
}

TEST(BadInputs, PlanPinMatchingNothingAndNegativeBpwRefused) {
    const std::string store = store_with_tiny_sweep(fresh_dir("pin"), "Q8_0");
    ASSERT_FALSE(::testing::Test::HasFailure());
    // was: accepted, nothing pinned
    expect_refused_naming("plan 1 --target-bpw 6 --pin 'ffn_dwon=Q8_0'" + store, "ffn_dwon");
    expect_refused_naming("plan 1 --target-bpw -1" + store, "--target-bpw");
}

TEST(BadInputs, PlanInteractionsAndRefineRefusedWhereTheyCannotBeComputed) {
    const std::string dir = fresh_dir("interactions");
    const std::string store = store_with_tiny_sweep(dir, "Q4_K,Q8_0");
    ASSERT_FALSE(::testing::Test::HasFailure());
    // The correction is fitted to mean KLD: a plan ranked by PPL or p99 is refused by name.
    expect_refused_naming("plan 1 --target-bpw 6 --interactions 4 --metric ppl" + store,
                          "--metric kld --objective mean");
    expect_refused_naming("plan 1 --target-bpw 6 --interactions -3" + store, "--interactions -3");
    expect_refused_naming("plan 1 --format gptq --target-bpw 6 --interactions 4" + store,
                          "not GPTQ formats");
    expect_refused_naming("plan 1 --format gptq --target-bpw 6 --refine -2" + store, "--refine N");
    expect_refused_naming("plan 1 --format gptq --target-bpw 6 --refine-tokens 512" + store,
                          "--refine-tokens");
    expect_refused_naming("plan 1 --knee --refine 2" + store, "--refine lowers");
    // Nothing was measured by the refused plans.
    jobs::Store s(dir + "/s.sqlite");
    EXPECT_FALSE(s.get_artifact(1, "interactions").has_value());
}

// ---- Disk full ------------------------------------------------------------------------------

TEST(DiskFull, QuantizeLeavesNeitherAPartialFileNorItsTemporary) {
    // A file-size limit makes write() fail with EFBIG part-way, as a full disk fails with
    // ENOSPC: the command must fail, and neither the output nor a temporary may remain.
    const std::string dir = fresh_dir("disk-full");
    const auto r =
        cli_testing::run_cli("-q quantize " + kModel + " --preset Q8_0 -o " + dir + "/out.gguf",
                             "trap '' XFSZ; ulimit -f 2048;");
    EXPECT_NE(r.code, 0) << r.out;
    size_t left = 0;
    for (const auto& e : fs::directory_iterator(dir)) {
        ++left;
        ADD_FAILURE() << "left behind: " << e.path();
    }
    EXPECT_EQ(left, 0u);
}

// ---- 11. Errors that say where --------------------------------------------------------------

TEST(ErrorsNameTheirSource, GgufValueOfTheWrongType) {
    const std::string dir = fresh_dir("gguf-type");
    GgufWriter w;
    const GgufFile src = GgufFile::open(kQ4);
    w.copy_from(src);
    w.add_kv("llama.block_count", GgufValue::string("eight"));
    write_bytes(dir + "/m.gguf", w.serialize());
    const auto r = run_quiet("inspect " + dir + "/m.gguf");
    EXPECT_NE(r.code, 0);
    EXPECT_TRUE(contains(r.out, "m.gguf: key 'llama.block_count'")) << r.out;
}

TEST(ErrorsNameTheirSource, InvalidUtf8TextNamesTheText) {
    const std::string dir = fresh_dir("utf8");
    std::ofstream(dir + "/bad.txt") << "fine text\nthen a bad byte \xff here\n";
    const auto r = run_quiet("eval " + kModel + " --text " + dir + "/bad.txt --chunks 1");
    EXPECT_NE(r.code, 0);
    EXPECT_TRUE(contains(r.out, dir + "/bad.txt: not valid UTF-8 at byte 26 (line 2")) << r.out;
}

TEST(ErrorsNameTheirSource, DirectoryAsTextFile) {
    const std::string dir = fresh_dir("text-dir");
    const auto r = run_quiet("eval " + kModel + " --text " + dir + " --chunks 1");
    EXPECT_NE(r.code, 0);
    EXPECT_TRUE(contains(r.out, "is a directory, expected a regular file")) << r.out;
}

TEST(ErrorsNameTheirSource, FifoIsRefusedNotWaitedOn) {
    const std::string dir = fresh_dir("fifo");
    const std::string fifo = dir + "/model.gguf";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    // `timeout` turns the old hang into a failure instead of a stuck test.
    const auto r = cli_testing::run_cli("-q inspect " + fifo, "timeout 20");
    EXPECT_NE(r.code, 124) << "inspect hung on a FIFO";
    EXPECT_TRUE(contains(r.out, "FIFO")) << r.out;
}

TEST(ErrorsNameTheirSource, JobsStoreAbsolutePaths) {
    const std::string dir = fresh_dir("abs");
    jobs::Store store(dir + "/s.sqlite");
    SweepOptions o;
    o.model = fs::relative(kModel).string();
    o.eval_text = fs::relative(kEval).string();
    o.imatrix = fs::relative(kImatrix).string();
    o.n_tokens = 512;
    o.types = {GgmlType::Q4_K};
    ASSERT_FALSE(fs::path(o.model).is_absolute());
    const int64_t id = create_sweep_job(store, o, "test");
    const jobs::Job job = store.get_job(id);
    EXPECT_TRUE(fs::path(job.model).is_absolute()) << job.model;
    const auto params = nlohmann::json::parse(job.params);
    for (const char* key : {"model", "eval_text", "imatrix"})
        EXPECT_TRUE(fs::path(params.at(key).get<std::string>()).is_absolute())
            << key << ": " << params.at(key);
}

}  // namespace
}  // namespace quantlens
