// `verify` is held out by default (issue 25): a recipe whose sweep evaluated the text verify
// is given is refused, naming both texts and the shared windows; --allow-overlap measures it
// with a loud warning; held-out text is accepted and the table says which text tuned and which
// verified; a recipe without provenance is measured with a note. The rows carry p99.9 KLD,
// between p99 and the maximum. Real data: llama-8m, 4 windows of 64 tokens.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "core/hash.h"
#include "jobs/store.h"
#include "model/model.h"
#include "support/cli_run.h"

namespace fs = std::filesystem;
using namespace quantlens::cli_testing;
namespace jobs = quantlens::jobs;

namespace {

// A sweep job as `sweep` records it (only what verify reads: the text, its hash, ctx, tokens).
int64_t add_sweep_job(const std::string& store_path, const std::string& text, int64_t ctx,
                      int64_t n_tokens, const std::string& model_hash = "") {
    jobs::Store store(store_path);
    jobs::NewJob nj;
    nj.kind = jobs::JobKind::sweep;
    nj.params = nlohmann::json{
        {"model", shared_path("models/llama-8m")},
        {"eval_text", text},
        {"n_tokens", n_tokens},
        {"ctx", ctx},
        {"types",
         {"Q8_0"}}}.dump();
    nj.model = shared_path("models/llama-8m");
    nj.model_hash = model_hash;
    nj.text_hash = quantlens::hash_files({text});
    return store.create_job(nj);
}

void write_recipe(const fs::path& p, int64_t job_id, const std::string& model_hash = "") {
    std::ofstream(p) << R"({"format": "quantlens-recipe", "version": 1, "default_type": "Q4_K",)"
                     << (job_id > 0 ? "\"job_id\": " + std::to_string(job_id) + "," : "")
                     << (model_hash.empty() ? "" : "\"model_hash\": \"" + model_hash + "\",")
                     << R"( "tensors": {}})";
}

struct VerifyRun {
    Result r;
    nlohmann::json j;
};

VerifyRun verify(const fs::path& dir, const fs::path& recipe, const std::string& text,
                 const std::string& extra = "") {
    const fs::path json = dir / "v.json";
    fs::remove(json);
    VerifyRun run;
    run.r = run_quiet("verify --base " + shared_path("models/llama-8m") + " --text " + text +
                      " --ctx 64 --chunks 4 --presets '' --recipe " + recipe.string() +
                      " --out-dir " + (dir / "files").string() + " --store " +
                      (dir / "jobs.sqlite").string() + " --json " + json.string() + " " + extra);
    if (fs::exists(json)) run.j = nlohmann::json::parse(std::ifstream(json));
    return run;
}

bool has(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

}  // namespace

TEST(CliVerifyHeldOut, RefusesARecipeTunedOnTheVerifyTextAndNamesIt) {
    const fs::path dir = fresh_dir("cli-verify-heldout");
    const std::string eval = shared_path("data/eval.txt");
    // The sweep saw the first 2 windows of 256 of eval.txt: all 4 verify windows of 64 lie
    // inside them.
    const int64_t job = add_sweep_job((dir / "jobs.sqlite").string(), eval, 256, 512);
    write_recipe(dir / "tuned.json", job);
    write_recipe(dir / "other.json", job);  // a second plan of the same sweep: named too
    VerifyRun run =
        verify(dir, dir / "tuned.json", eval, "--recipe " + (dir / "other.json").string());
    EXPECT_EQ(run.r.code, 1) << run.r.out;
    EXPECT_TRUE(has(run.r.out, "tuned was tuned on " + eval)) << run.r.out;
    EXPECT_TRUE(has(run.r.out, "; other was tuned on " + eval)) << run.r.out;
    EXPECT_TRUE(has(run.r.out, "4 of the 4 windows of " + eval)) << run.r.out;
    EXPECT_TRUE(has(run.r.out, "--allow-overlap")) << run.r.out;
    EXPECT_FALSE(fs::exists(dir / "files" / "tuned.gguf")) << "refused before any work";

    run = verify(dir, dir / "tuned.json", eval, "--allow-overlap");
    ASSERT_EQ(run.r.code, 0) << run.r.out;
    EXPECT_TRUE(has(run.r.out, "WARNING: tuned was tuned on " + eval)) << run.r.out;
    EXPECT_TRUE(has(run.r.out, "OVERLAP: 4 of 4 verify windows")) << run.r.out;
    const auto& t = run.j.at("held_out").at("tuned").at(0);
    EXPECT_EQ(t.at("shared_windows"), 4);
    EXPECT_EQ(t.at("tuned_windows"), 2);
    EXPECT_EQ(t.at("tuned_text"), eval);
}

TEST(CliVerifyHeldOut, AcceptsHeldOutTextAndSaysWhichTextTunedAndWhichVerified) {
    const fs::path dir = fresh_dir("cli-verify-heldout");
    const std::string eval = shared_path("data/eval.txt"), calib = shared_path("data/calib.txt");
    const int64_t job = add_sweep_job((dir / "jobs.sqlite").string(), calib, 512, 8192);
    write_recipe(dir / "held.json", job);
    const VerifyRun run = verify(dir, dir / "held.json", eval);
    ASSERT_EQ(run.r.code, 0) << run.r.out;
    EXPECT_TRUE(has(run.r.out, "verified on " + eval + " (4 windows of 64 tokens)")) << run.r.out;
    EXPECT_TRUE(has(run.r.out, "held: tuned on " + calib + " (sweep job " + std::to_string(job) +
                                   ", 16 windows of 512); held out"))
        << run.r.out;
    EXPECT_FALSE(has(run.r.out, "WARNING")) << run.r.out;
    const auto& h = run.j.at("held_out");
    EXPECT_EQ(h.at("verified_text"), eval);
    EXPECT_EQ(h.at("verify_windows"), 4);
    EXPECT_EQ(h.at("tuned").at(0).at("tuned_text"), calib);
    EXPECT_EQ(h.at("tuned").at(0).at("shared_windows"), 0);
    EXPECT_EQ(h.at("tuned").at(0).at("job_id"), job);

    // p99.9 KLD beside p99 and the maximum, on a real verify (4 · 31 scored tokens).
    const auto& row = run.j.at("rows").at(0);
    const double p99 = row.at("kld_p99").get<double>(), p999 = row.at("kld_p999").get<double>(),
                 mx = row.at("kld_max").get<double>();
    EXPECT_GT(row.at("kld_mean").get<double>(), 0.0);
    EXPECT_LT(p99, p999);
    EXPECT_LE(p999, mx);
    EXPECT_TRUE(has(run.r.out, "p99.9")) << run.r.out;
}

TEST(CliVerifyHeldOut, ARecipeWithoutProvenanceOrJobIsMeasuredWithANote) {
    const fs::path dir = fresh_dir("cli-verify-heldout");
    const std::string eval = shared_path("data/eval.txt");
    write_recipe(dir / "bare.json", 0);
    VerifyRun run = verify(dir, dir / "bare.json", eval);
    ASSERT_EQ(run.r.code, 0) << run.r.out;
    EXPECT_TRUE(has(run.r.out, "records no sweep job (no provenance)")) << run.r.out;
    EXPECT_FALSE(fs::exists(dir / "jobs.sqlite")) << "no store is made to look for nothing";

    add_sweep_job((dir / "jobs.sqlite").string(), eval, 128, 512);  // job 1, not 7
    write_recipe(dir / "lost.json", 7);
    run = verify(dir, dir / "lost.json", eval);
    ASSERT_EQ(run.r.code, 0) << run.r.out;
    EXPECT_TRUE(has(run.r.out, "job 7 is not in the store")) << run.r.out;
    EXPECT_EQ(run.j.at("held_out").at("tuned").at(0).at("checked"), false);
}

// A job with the recipe's id but of another model (the default store, another project) is not
// the recipe's sweep: its text is not trusted either way, and verify says so.
TEST(CliVerifyHeldOut, AJobOfAnotherModelIsNotTakenForTheRecipesSweep) {
    const fs::path dir = fresh_dir("cli-verify-heldout");
    const std::string eval = shared_path("data/eval.txt");
    const std::string llama =
        quantlens::Model::open(shared_path("models/llama-8m"))->content_hash();
    add_sweep_job((dir / "jobs.sqlite").string(), eval, 128, 512, "aaaaaaaaaaaaaaaa");  // job 1
    add_sweep_job((dir / "jobs.sqlite").string(), eval, 128, 512, llama);               // job 2
    write_recipe(dir / "r.json", 1, llama);
    VerifyRun run = verify(dir, dir / "r.json", eval);
    ASSERT_EQ(run.r.code, 0) << run.r.out;
    EXPECT_TRUE(has(run.r.out, "measured another model than the recipe's")) << run.r.out;
    EXPECT_EQ(run.j.at("held_out").at("tuned").at(0).at("checked"), false);
    // Job 2 is of the recipe's model: it is the recipe's sweep, and its overlap is refused.
    write_recipe(dir / "same.json", 2, llama);
    run = verify(dir, dir / "same.json", eval);
    EXPECT_EQ(run.r.code, 1) << run.r.out;
    EXPECT_TRUE(has(run.r.out, "--allow-overlap")) << run.r.out;
}
