// Test helper (header-only) for every test module: where the shared test data lives and a
// clean scratch directory, so no test file carries its own copy of either.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace quantlens::test_support {

// QUANTLENS_SHARED when set and not empty (ctest sets it), else the configured ../shared.
inline std::string shared_dir() {
    const char* env = std::getenv("QUANTLENS_SHARED");
    return env && *env ? env : QL_SHARED_DIR;
}

// A file of the shared test data: shared_path("models/llama-8m").
inline std::string shared_path(const std::string& rel) {
    return shared_dir() + "/" + rel;
}

// QL_TEST_TMP/NAME, emptied: a rerun starts clean. NAME should carry the test file's prefix,
// because every test executable shares QL_TEST_TMP.
inline std::string scratch_dir(const std::string& name) {
    const std::filesystem::path dir = std::filesystem::path(QL_TEST_TMP) / name;
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir.string();
}

// An empty directory QL_TEST_TMP/PREFIX-<test name>-<pid> (tests of one executable may run
// in parallel processes, and a rerun starts clean).
inline std::string fresh_dir(const std::string& prefix) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    return scratch_dir(prefix + "-" + std::string(info ? info->name() : "none") + "-" +
                       std::to_string(getpid()));
}

// A whole file's bytes ("" when it cannot be read), and writing them.
// gtest's name for a parameter named after a fixture, which may not hold '-' or '.'
// ("gptoss-mxfp4" → "gptoss_mxfp4", "qwen3.5" → "qwen3_5").
inline std::string fixture_test_name(std::string fixture) {
    for (char& ch : fixture)
        if (ch == '-' || ch == '.') ch = '_';
    return fixture;
}

inline std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}
inline void put(const std::filesystem::path& p, const std::string& text) {
    std::ofstream(p, std::ios::binary) << text;
}

// QL_TEST_TMP/<test suite>-files/NAME, with the directory created; the file itself is left as
// it is (a test removes what it must not find).
inline std::filesystem::path suite_file(const std::string& name) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    const std::filesystem::path d =
        std::filesystem::path(QL_TEST_TMP) /
        (std::string(info ? info->test_suite_name() : "none") + "-files");
    std::filesystem::create_directories(d);
    return d / name;
}

inline bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

}  // namespace quantlens::test_support
