// Replays the fuzz corpus (fuzz/corpus/{gguf,safetensors,config}) through the same entry
// points the libFuzzer targets use, in the normal build: ok-* files must parse, bad-* files
// must be rejected with an Error whose message names the file, and nothing may crash or
// throw anything else. Crashes found by scripts/fuzz.sh are added here as bad-* files.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "../../fuzz/entries.cpp"  // compiled into this test: no separate library needed
#include "core/error.h"
#include "core/mmap_file.h"
#include "formats/gguf.h"
#include "formats/model_config.h"
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

template <typename Entry, typename Open>
void replay(const std::string& kind, Entry entry, Open open_file) {
    const auto files = corpus(kind);
    ASSERT_GE(files.size(), 10u) << kind;
    for (const auto& f : files) {
        const std::string name = f.filename().string();
        const bool expect_ok = name.rfind("ok-", 0) == 0;
        std::vector<uint8_t> bytes;
        {
            MappedFile m(f.string());
            bytes.assign(m.data(), m.data() + m.size());
        }
        EXPECT_EQ(entry(bytes.data(), bytes.size()), expect_ok) << name;
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
