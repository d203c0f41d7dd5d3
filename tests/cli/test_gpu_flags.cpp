// --gpu on eval, verify and calibrate (issue 21): what the GPU cannot compute as asked is
// refused by name before any work (calibrate with llama.cpp's matmul-input rounding; a build
// without CUDA), and nothing is written. The GPU results themselves are tested in tests/cuda on a
// GPU machine.
#include <filesystem>

#include "support/cli_run.h"

namespace quantlens::cli_testing {
namespace {

const std::string kModel = shared_path("models/llama-8m");
const std::string kText = shared_path("data/eval.txt");

bool built_without_cuda(const Result& r) {
    return r.out.find("built without CUDA") != std::string::npos;
}

// calibrate --gpu has no llama.cpp rounding (its statistics are of the unrounded inputs the
// CPU hook sees too, but the GPU's activations are F16): refused before any work.
TEST(GpuFlags, CalibrateGpuWithGgmlNumericsIsRefusedAndWritesNothing) {
    const std::string dir = fresh_dir("gpu-flags-calibrate");
    const Result r = run_quiet("calibrate " + kModel + " --text " + kText +
                               " --chunks 1 --gpu --ggml-numerics -o " + dir + "/i.dat");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("calibrate --gpu"), std::string::npos) << r.out;
    EXPECT_FALSE(std::filesystem::exists(dir + "/i.dat"));
}

// quantize runs a model only for the --gptq Hessians, and the GPU's are those of F16 weights.
TEST(GpuFlags, QuantizeGpuNeedsGptqAndF16) {
    const std::string dir = fresh_dir("gpu-flags-quantize");
    const std::string base = "quantize " + kModel + " --preset Q4_K_M -o " + dir + "/q.gguf --gpu";
    Result r = run_quiet(base);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("quantize --gpu"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("--gptq"), std::string::npos) << r.out;
    r = run_quiet(base + " --gptq " + kText + " --no-f16");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("--no-f16"), std::string::npos) << r.out;
    EXPECT_FALSE(std::filesystem::exists(dir + "/q.gguf"));
}

// Without CUDA every --gpu is refused by name; with CUDA but no device the engine says so.
TEST(GpuFlags, GpuWithoutCudaIsRefusedByName) {
    const std::string dir = fresh_dir("gpu-flags-nocuda");
    const Result e = run_quiet("eval " + kModel + " --text " + kText + " --chunks 2 --gpu");
    if (!built_without_cuda(e)) GTEST_SKIP() << "a CUDA build: --gpu is accepted";
    EXPECT_EQ(e.code, 1) << e.out;
    EXPECT_NE(e.out.find("eval --gpu"), std::string::npos) << e.out;
    // llama.cpp's numerics on the GPU (eval, verify's default) need CUDA too, and the verify
    // refusal comes before any file is written.
    const Result g =
        run_quiet("eval " + kModel + " --text " + kText + " --chunks 2 --gpu --ggml-numerics");
    EXPECT_EQ(g.code, 1) << g.out;
    EXPECT_TRUE(built_without_cuda(g)) << g.out;
    const Result v = run_quiet("verify " + shared_path("models/llama-8m-Q4_K_M.gguf") + " --base " +
                               kModel + " --text " + kText + " --gpu --out-dir " + dir + "/v");
    EXPECT_EQ(v.code, 1) << v.out;
    EXPECT_TRUE(built_without_cuda(v)) << v.out;
    EXPECT_FALSE(std::filesystem::exists(dir + "/v/base.qllogp"));
    // compare --gpu is refused before its job exists: the store stays empty.
    const Result k =
        run_quiet("compare " + kModel + " " + shared_path("models/llama-8m-Q4_K_M.gguf") +
                  " --text " + kText + " --chunks 1 --gpu --store " + dir + "/s.sqlite");
    EXPECT_EQ(k.code, 1) << k.out;
    EXPECT_NE(k.out.find("compare --gpu"), std::string::npos) << k.out;
    EXPECT_TRUE(built_without_cuda(k)) << k.out;
    const Result jobs = run_quiet("jobs list --store " + dir + "/s.sqlite");
    EXPECT_EQ(jobs.out.find("compare"), std::string::npos) << jobs.out;
    const Result c = run_quiet("calibrate " + kModel + " --text " + kText +
                               " --chunks 1 --gpu -o " + dir + "/i.dat");
    EXPECT_EQ(c.code, 1) << c.out;
    EXPECT_TRUE(built_without_cuda(c)) << c.out;
    EXPECT_FALSE(std::filesystem::exists(dir + "/i.dat"));
    const Result q = run_quiet("quantize " + kModel + " --preset Q4_K_M -o " + dir +
                               "/q.gguf --gptq " + kText + " --gptq-chunks 1 --gpu");
    EXPECT_EQ(q.code, 1) << q.out;
    EXPECT_TRUE(built_without_cuda(q)) << q.out;
    EXPECT_NE(q.out.find("quantize --gptq --gpu"), std::string::npos) << q.out;
    EXPECT_FALSE(std::filesystem::exists(dir + "/q.gguf"));
}

}  // namespace
}  // namespace quantlens::cli_testing
