// Bad input reaches the engine as a clear Error: unknown architecture, missing tokenizer,
// GGUF metadata that disagrees with the tensors.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/mmap_file.h"
#include "engine/engine.h"
#include "engine/tokenizer.h"
#include "formats/gguf.h"
#include "model/model.h"
#include "support/error_of.h"
#include "support/test_data.h"

namespace quantlens {
namespace {

using quantlens::test_support::scratch_dir;
using quantlens::test_support::shared_dir;

namespace fs = std::filesystem;

// An HF directory with llama-8m's weights (symlinked) and an editable config.
std::string hf_copy(const std::string& name, bool with_tokenizer) {
    const std::string src = shared_dir() + "/models/llama-8m",
                      dir = scratch_dir("engine-errors/" + name);
    for (const auto& e : fs::directory_iterator(src)) {
        const std::string f = e.path().filename().string();
        if (!with_tokenizer && f.rfind("tokenizer", 0) == 0) continue;
        fs::create_symlink(e.path(), dir + "/" + f);
    }
    return dir;
}

using test_support::error_of;

TEST(EngineErrors, UnknownArchitecture) {
    const std::string dir = hf_copy("unknown-arch", true);
    std::string config = read_text_file(dir + "/config.json");
    config.replace(config.find("LlamaForCausalLM"), 16, "FooForCausalLM");
    config.replace(config.find("\"llama\""), 7, "\"foo\"");
    fs::remove(dir + "/config.json");
    std::ofstream(dir + "/config.json") << config;
    const std::string msg = error_of([&] { Model::open(dir); });
    EXPECT_NE(msg.find("FooForCausalLM"), std::string::npos) << msg;
}

TEST(EngineErrors, MissingTokenizer) {
    const std::string dir = hf_copy("no-tokenizer", false);
    const auto model = Model::open(dir);
    const std::string msg = error_of([&] { Tokenizer::load(*model); });
    EXPECT_NE(msg.find("missing tokenizer"), std::string::npos) << msg;
    EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
}

TEST(EngineErrors, GgufMetadataDisagreesWithTensors) {
    const GgufFile src = GgufFile::open(shared_dir() + "/models/llama-8m-Q4_K_M.gguf");
    const std::string dir = scratch_dir("engine-errors/bad-gguf");
    // Claim 8 heads of 64 where the tensors hold 4: attn_q is [256, 256], not [256, 512].
    GgufWriter w;
    w.copy_from(src);
    w.add_kv("llama.attention.head_count", GgufValue::u32(8));
    w.add_kv("llama.attention.head_count_kv", GgufValue::u32(4));
    w.write(dir + "/bad.gguf");
    const std::string msg = error_of([&] {
        const auto model = Model::open(dir + "/bad.gguf");
        Engine engine(*model);
    });
    EXPECT_NE(msg.find("bad.gguf"), std::string::npos) << msg;
    EXPECT_NE(msg.find("attn_"), std::string::npos) << msg;  // the first disagreeing tensor
}

TEST(EngineErrors, GgufWithoutTokenizer) {
    const GgufFile src = GgufFile::open(shared_dir() + "/models/llama-8m-Q4_K_M.gguf");
    const std::string dir = scratch_dir("engine-errors/gguf-no-tokenizer");
    GgufWriter w;
    for (const auto& [key, value] : src.kv())
        if (key.rfind("tokenizer.", 0) != 0) w.add_kv(key, value);
    for (const auto& t : src.tensors()) w.add_tensor(t.name, t.ne, t.type, src.tensor_data(t));
    w.write(dir + "/notok.gguf");
    const auto model = Model::open(dir + "/notok.gguf");
    const std::string msg = error_of([&] { Tokenizer::load(*model); });
    EXPECT_NE(msg.find("missing tokenizer"), std::string::npos) << msg;
}

}  // namespace
}  // namespace quantlens
