// Replays the fuzz corpus (fuzz/corpus/TARGET, one folder per libFuzzer target) through the
// same entry points the targets use, in the normal build: ok-* files must parse, bad-* files
// must be rejected with an Error, and nothing may crash or throw anything else. Where a
// corpus file is also a file the tool opens by path, opening it must fail with a message
// naming the file. Crashes found by scripts/fuzz.sh are added here as bad-* files.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <type_traits>
#include <vector>

// Compiled into this test: no separate library needed.
#include "../../fuzz/entries.cpp"
#include "../../fuzz/entries_app.cpp"
#include "core/error.h"
#include "core/mmap_file.h"
#include "formats/gguf.h"
#include "formats/imatrix.h"
#include "formats/model_config.h"
#include "formats/recipe.h"
#include "formats/safetensors.h"

using namespace quantlens;
namespace fs = std::filesystem;

namespace {

std::vector<fs::path> corpus(const std::string& kind) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(fs::path(QL_SOURCE_DIR) / "fuzz/corpus" / kind))
        files.push_back(e.path());
    std::sort(files.begin(), files.end());
    return files;
}

// Inputs of these targets are not one file the tool opens by path.
void no_open(const std::string&) {}

template <typename Entry, typename Open>
void replay(const std::string& kind, Entry entry, Open open_file, size_t min_files = 10) {
    const auto files = corpus(kind);
    ASSERT_GE(files.size(), min_files) << kind;
    for (const auto& f : files) {
        const std::string name = f.filename().string();
        const bool expect_ok = name.rfind("ok-", 0) == 0;
        std::vector<uint8_t> bytes;
        {
            MappedFile m(f.string());
            bytes.assign(m.data(), m.data() + m.size());
        }
        const bool parsed = entry(bytes.data(), bytes.size());
        EXPECT_EQ(parsed, expect_ok) << name;
        if constexpr (std::is_same_v<Open, void (*)(const std::string&)>) continue;
        try {
            open_file(f.string());
            EXPECT_TRUE(expect_ok) << name << " opened without error";
        } catch (const Error& e) {
            EXPECT_FALSE(expect_ok) << name << ": " << e.what();
            EXPECT_NE(std::string(e.what()).find(f.string()), std::string::npos)
                << name << ": message does not name the file: " << e.what();
        }
    }
}

}  // namespace

TEST(FuzzCorpus, Gguf) {
    replay("gguf", fuzz::gguf_entry, [](const std::string& p) { GgufFile::open(p); });
}

TEST(FuzzCorpus, Safetensors) {
    replay("safetensors", fuzz::safetensors_entry,
           [](const std::string& p) { SafetensorsModel::open(p); });
}

TEST(FuzzCorpus, Config) {
    replay("config", fuzz::config_entry, [](const std::string& p) { load_hf_config(p); });
}

TEST(FuzzCorpus, Imatrix) {
    replay("imatrix", fuzz::imatrix_entry, [](const std::string& p) { Imatrix::load(p); });
}

TEST(FuzzCorpus, Recipe) {
    replay("recipe", fuzz::recipe_entry, [](const std::string& p) { load_recipe(p); });
}

TEST(FuzzCorpus, Tokenizer) {
    replay("tokenizer", fuzz::tokenizer_entry, no_open);
}

TEST(FuzzCorpus, SafetensorsIndex) {
    replay("st_index", fuzz::st_index_entry, no_open);
}

TEST(FuzzCorpus, Zoo) {
    replay("zoo", fuzz::zoo_entry, no_open);
}

TEST(FuzzCorpus, Params) {
    replay("params", fuzz::params_entry, no_open);
}

TEST(FuzzCorpus, StoredMixes) {
    replay("mixes", fuzz::mixes_entry, no_open);
}

TEST(FuzzCorpus, Server) {
    replay("server", fuzz::server_entry, no_open);
}
