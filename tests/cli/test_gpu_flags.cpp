// --gpu on eval, verify and calibrate (issue 21): what the GPU cannot compute as asked is
// refused by name before any work (llama.cpp's matmul-input rounding; a build without CUDA),
// and nothing is written. The GPU results themselves are tested in tests/cuda on a GPU machine.
#include <filesystem>

#include "support/cli_run.h"

namespace quantlens::cli_testing {
namespace {

const std::string kModel = shared_path("models/llama-8m");
const std::string kText = shared_path("data/eval.txt");

bool built_without_cuda(const Result& r) {
    return r.out.find("built without CUDA") != std::string::npos;
}

TEST(GpuFlags, EvalGpuWithGgmlNumericsIsRefused) {
    const Result r = run_quiet("eval " + kModel + " --text " + kText + " --gpu --ggml-numerics");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("eval --gpu"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("--ggml-numerics"), std::string::npos) << r.out;
}

TEST(GpuFlags, VerifyGpuNeedsNoGgmlNumerics) {
    const std::string dir = fresh_dir("gpu-flags-verify");
    const Result r = run_quiet("verify " + shared_path("models/llama-8m-Q4_K_M.gguf") + " --base " +
                               kModel + " --text " + kText + " --gpu --out-dir " + dir + "/v");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("verify --gpu"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("--no-ggml-numerics"), std::string::npos) << r.out;
    EXPECT_FALSE(std::filesystem::exists(dir + "/v/base.qllogp"));
}

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
