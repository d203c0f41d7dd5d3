// `quantlens quantize` end to end: the Q4_K_M preset on llama-8m reproduces llama.cpp's
// file tensor for tensor; fallbacks are printed by tensor name; bad input exits 1 with a
// message naming the problem and leaves no file.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "support/cli_run.h"

#include "formats/gguf.h"

namespace fs = std::filesystem;
using namespace quantlens::cli_testing;

TEST(CliQuantize, PresetQ4KMReproducesLlamaCpp) {
    const fs::path out = suite_file("llama-8m-Q4_K_M.gguf");
    const Result r = run_quiet("quantize " + shared_path("models/llama-8m") +
                               " --preset Q4_K_M --force -o " + out.string());
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_TRUE(contains(r.out, "general.file_type 15 (Q4_K_M)")) << r.out;
    EXPECT_TRUE(contains(r.out, "75 tensors")) << r.out;
    EXPECT_TRUE(contains(r.out, "8392960 parameters, 5.12 bpw")) << r.out;
    EXPECT_FALSE(contains(r.out, "fell back")) << r.out;

    const auto ours = quantlens::GgufFile::open(out.string());
    const auto ref = quantlens::GgufFile::open(shared_path("models/llama-8m-Q4_K_M.gguf"));
    ASSERT_EQ(ours.tensors().size(), ref.tensors().size());
    for (size_t i = 0; i < ref.tensors().size(); ++i) {
        const auto& a = ours.tensors()[i];
        const auto& b = ref.tensors()[i];
        ASSERT_EQ(a.name, b.name);
        ASSERT_EQ(a.type, b.type) << a.name;
        const auto da = ours.tensor_data(a);
        const auto db = ref.tensor_data(b);
        ASSERT_EQ(da.size(), db.size()) << a.name;
        EXPECT_EQ(std::memcmp(da.data(), db.data(), da.size()), 0) << a.name;
    }
}

TEST(CliQuantize, FallbacksArePrintedAndStrictRefuses) {
    const fs::path out = suite_file("tiny-qwen2.gguf");
    const Result r = run_quiet("quantize " + shared_path("models/tiny-qwen2") +
                                   " --preset Q4_K_M --force --json -o " + out.string(),
                               /*merge_stderr=*/false);
    ASSERT_EQ(r.code, 0) << r.out;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["file_type"], 15);
    bool found = false;
    for (const auto& t : j["tensors"])
        if (t["name"] == "blk.1.attn_v.weight") {
            found = true;
            EXPECT_EQ(t["written"], "Q8_0");
        }
    EXPECT_TRUE(found);
    bool reported = false;
    for (const auto& f : j["fallbacks"])
        if (f.get<std::string>().rfind("blk.1.attn_v.weight: Q6_K → Q8_0", 0) == 0) reported = true;
    EXPECT_TRUE(reported) << j["fallbacks"].dump();
    // The preset already applied llama.cpp's fallback (and noted it in the recipe); a plain
    // recipe asking Q4_K everywhere shows the substitution in quantize's own report.
    const fs::path recipe = suite_file("q4k.json");
    {
        std::ofstream f(recipe);
        f << R"({"format": "quantlens-recipe", "version": 1, "default_type": "Q4_K",
                 "tensors": {"blk.0.ffn_down.weight": "Q6_K"}})";
    }
    const Result fb = run_quiet("quantize " + shared_path("models/tiny-qwen2") + " --recipe " +
                                recipe.string() + " --force -o " + out.string());
    ASSERT_EQ(fb.code, 0) << fb.out;
    EXPECT_TRUE(contains(fb.out, "fell back")) << fb.out;
    EXPECT_TRUE(contains(fb.out, "blk.0.ffn_down.weight: Q6_K → Q8_0")) << fb.out;
    EXPECT_TRUE(contains(fb.out, "blk.0.attn_q.weight: Q4_K → Q5_0")) << fb.out;

    const fs::path strict_out = suite_file("strict.gguf");
    fs::remove(strict_out);
    const Result s = run_quiet("quantize " + shared_path("models/tiny-qwen2") + " --recipe " +
                               recipe.string() + " --strict -o " + strict_out.string());
    EXPECT_EQ(s.code, 1) << s.out;
    EXPECT_TRUE(contains(s.out, "blk.0.ffn_down.weight")) << s.out;
    EXPECT_FALSE(fs::exists(strict_out));
}

TEST(CliQuantize, BadInput) {
    const std::string model = shared_path("models/tiny-qwen2");
    const fs::path out = suite_file("bad.gguf");
    fs::remove(out);

    Result r = run_quiet("quantize " + model + " -o " + out.string());
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_TRUE(contains(r.out, "--recipe or --preset")) << r.out;

    r = run_quiet("quantize " + model + " --preset Q4_K_XL -o " + out.string());
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_TRUE(contains(r.out, "Q4_K_XL")) << r.out;

    const fs::path recipe = suite_file("missing.json");
    {
        std::ofstream f(recipe);
        f << R"({"format": "quantlens-recipe", "version": 1, "default_type": "Q8_0",
                 "tensors": {"blk.9.ffn_up.weight": "Q4_K"}})";
    }
    r = run_quiet("quantize " + model + " --recipe " + recipe.string() + " -o " + out.string());
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_TRUE(contains(r.out, "blk.9.ffn_up.weight")) << r.out;
    EXPECT_FALSE(fs::exists(out));

    {
        std::ofstream f(out);
        f << "existing";
    }
    r = run_quiet("quantize " + model + " --preset Q8_0 -o " + out.string());
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_TRUE(contains(r.out, "--force")) << r.out;
    EXPECT_EQ(fs::file_size(out), 8u);
}

TEST(CliQuantize, GptqRoundsTheLinearsAndNamesWhatItDidNot) {
    // Same preset with and without GPTQ: the same types tensor for tensor, token_embd (a lookup,
    // no Hessian) byte-identical and reported, every linear rounded differently.
    const std::string model = shared_path("models/llama-8m");
    const std::string imatrix = shared_path("data/llama-8m.llamacpp-imatrix.dat");
    const fs::path plain = suite_file("plain-Q4_K_M.gguf"), gptq = suite_file("gptq-Q4_K_M.gguf");
    Result r = run_quiet("quantize " + model + " --preset Q4_K_M --imatrix " + imatrix +
                         " --summary --force -o " + plain.string());
    ASSERT_EQ(r.code, 0) << r.out;
    r = run_quiet("quantize " + model + " --preset Q4_K_M --imatrix " + imatrix + " --gptq " +
                  shared_path("data/calib.txt") + " --gptq-chunks 4 --summary --force -o " +
                  gptq.string());
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_TRUE(contains(r.out, "gptq: 57 tensor(s) rounded with GPTQ (Hessians of 2048 tokens)"))
        << r.out;
    EXPECT_TRUE(contains(r.out,
                         "1 quantized plainly (no matmul input or type not covered): "
                         "token_embd.weight"))
        << r.out;
    const auto a = quantlens::GgufFile::open(plain.string());
    const auto b = quantlens::GgufFile::open(gptq.string());
    ASSERT_EQ(a.tensors().size(), b.tensors().size());
    int differing = 0;
    for (size_t i = 0; i < a.tensors().size(); ++i) {
        const auto& ta = a.tensors()[i];
        const auto& tb = b.tensors()[i];
        ASSERT_EQ(ta.name, tb.name);
        EXPECT_EQ(ta.type, tb.type) << ta.name;
        const auto da = a.tensor_data(ta), db = b.tensor_data(tb);
        const bool same =
            da.size() == db.size() && std::memcmp(da.data(), db.data(), da.size()) == 0;
        if (ta.name == "token_embd.weight" || ta.type == quantlens::GgmlType::F32)
            EXPECT_TRUE(same) << ta.name;
        else
            differing += same ? 0 : 1;
    }
    EXPECT_EQ(differing, 57);

    r = run_quiet("quantize " + model +
                  " --preset Q4_K_M --gptq /nonexistent/calib.txt --force -o " +
                  suite_file("never.gguf").string());
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_TRUE(contains(r.out, "/nonexistent/calib.txt")) << r.out;
    EXPECT_FALSE(fs::exists(suite_file("never.gguf")));
}

// A recipe's per-tensor rounding (schema version 2) is refused, naming the tensor, when its
// name is unknown or when quantize lacks what it needs (GPTQ without --gptq TEXT); nothing is
// written.
TEST(CliQuantize, RecipeRoundingThatCannotBeDoneIsRefusedByTensor) {
    const std::string model = shared_path("models/llama-8m");
    const fs::path out = suite_file("rounding.gguf");
    fs::remove(out);
    const fs::path recipe = suite_file("rounding.json");
    const auto write = [&](const std::string& rounding) {
        std::ofstream(recipe) << R"({"format": "quantlens-recipe", "version": 2,
            "default_type": "Q4_K", "tensors": {"blk.2.attn_v.weight": "Q6_K"},
            "rounding": {"blk.2.attn_v.weight": ")" +
                                     rounding + R"("}})";
    };
    write("awq");
    Result r =
        run_quiet("quantize " + model + " --recipe " + recipe.string() + " -o " + out.string());
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_TRUE(contains(r.out, "blk.2.attn_v.weight") && contains(r.out, "unknown rounding"))
        << r.out;
    write("gptq");
    r = run_quiet("quantize " + model + " --recipe " + recipe.string() + " -o " + out.string());
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_TRUE(contains(r.out, "blk.2.attn_v.weight: rounding gptq") &&
                contains(r.out, "--gptq TEXT"))
        << r.out;
    EXPECT_FALSE(fs::exists(out));
    write("plain");  // can be done: --json says which tensor the recipe rounded how
    r = run_quiet(
        "quantize " + model + " --recipe " + recipe.string() + " --json -o " + out.string(), false);
    ASSERT_EQ(r.code, 0) << r.out;
    for (const auto& t : nlohmann::json::parse(r.out).at("tensors"))
        EXPECT_EQ(t.at("rounding"), t.at("name") == "blk.2.attn_v.weight" ? nlohmann::json("plain")
                                                                          : nlohmann::json(nullptr))
            << t.at("name");
}
