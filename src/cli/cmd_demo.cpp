// `quantlens demo`: the whole pipeline on the bundled model (examples/models/llama-8m) in a
// few minutes on 2 cores. It tunes on one bundled text and verifies on another (held out:
// verify refuses a recipe judged on the text it was tuned on, analysis/studies/holdout.h):
//   inspect → weight-error → sweep (6 types, 2,048 tokens) → plan at the size of
//   llama.cpp's Q4_K_M → quantize → verify against Q4_K_M and Q3_K_M → report.
// Everything lands in ./quantlens-demo/ and the sweep is a job in the default store, so
// `quantlens serve` shows it too.
#include <cmath>
#include <filesystem>

#include <fmt/format.h>

#include "analysis/plan/plan_job.h"
#include "analysis/studies/verify.h"
#include "analysis/sweep/sweep.h"
#include "analysis/sweep/weight_error_sweep.h"
#include "analysis/write/quantize.h"
#include "cli/command.h"
#include "core/error.h"
#include "core/ggml_type.h"
#include "core/output_file.h"
#include "core/progress.h"
#include "jobs/runner.h"
#include "jobs/store.h"
#include "model/model.h"
#include "report/report_data.h"
#include "report/report_html.h"

namespace quantlens::cli {
void register_sweep_runner();

namespace {
namespace fs = std::filesystem;

std::string find_demo_file(const std::string& rel) {
    for (const std::string& base : {std::string("."), std::string(QL_SOURCE_DIR)}) {
        const fs::path p = fs::path(base) / rel;
        if (fs::exists(p)) return p.string();
    }
    fail("demo: bundled {} not found (run from the repository root)", rel);
}

void step(int n, const std::string& what) {
    fmt::print("\n[{}/7] {}\n", n, what);
}

int run_demo(const std::string& out_dir, int64_t tokens, bool force) {
    const std::string model_path = find_demo_file("examples/models/llama-8m");
    // The sweep tunes on calibration text (a sample of calib.txt, Python's documentation);
    // verify judges the recipe on evaluation text (a sample of eval.txt) it never saw.
    const std::string calib_text = find_demo_file("examples/data/calib-sample.txt");
    const std::string eval_text = find_demo_file("examples/data/eval-sample.txt");
    // The files of an earlier demo are refused up front (a rerun needs --force), not after
    // minutes of sweeping. verify's candidates in the folder are its reusable working files.
    const Overwrite ow = overwrite_if(force);
    const std::string recipe_path = (fs::path(out_dir) / "recipe.json").string();
    const std::string report_path = (fs::path(out_dir) / "report.html").string();
    const std::string gguf_path = (fs::path(out_dir) / "plan.gguf").string();
    fs::create_directories(out_dir);  // first: check_output_path refuses a missing folder
    for (const auto& p : {recipe_path, report_path, gguf_path}) check_output_path(p, ow);

    step(1, "inspect");
    auto model = Model::open(model_path);
    const auto& c = model->config();
    fmt::print("{}: {} ({}), {} layers, hidden {}, {} tensors, {} parameters, {:.2f} MB\n",
               model_path, c.hf_architecture, arch_name(c.arch), c.n_layers, c.hidden,
               model->tensors().size(), model->total_params(), model->total_bytes() / 1e6);

    step(2, "weight-error (the cheap proxy) for Q8_0, Q4_K, Q2_K");
    const auto we =
        run_weight_error(*model, {GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q2_K}, nullptr);
    for (const auto& t : we.totals)
        fmt::print("  {:<6} {:>6.3f} bpw  rel. Frobenius error {:.4f}  SNR {:.1f} dB\n",
                   ggml_type_display_name(t.type), t.bpw, t.error.rel_frobenius, t.error.snr_db);

    step(3, fmt::format("sweep: each tensor × 6 types, KLD against the full model on {} tokens "
                        "of {}",
                        tokens, calib_text));
    register_sweep_runner();
    jobs::Store store(jobs::resolve_store_path(""));
    SweepOptions so;
    so.model = model_path;
    so.eval_text = calib_text;
    so.n_tokens = tokens;
    so.types = {GgmlType::Q8_0, GgmlType::Q6_K, GgmlType::Q5_K,
                GgmlType::Q4_K, GgmlType::Q3_K, GgmlType::Q2_K};
    so.ggml_numerics = true;  // verify (step 6) measures with llama.cpp's numerics too
    const int64_t job = create_sweep_job(store, so, "quantlens demo");
    store.start(job);
    const jobs::JobState state = jobs::run_job(store, job, [&] { return run_sweep(store, job); });
    if (state != jobs::JobState::done) {
        fmt::print("demo: sweep job {} is {}; continue with `quantlens jobs resume {}`\n", job,
                   jobs::state_name(state), job);
        return 0;
    }
    fmt::print("{}", sweep_summary(store, job));

    step(4,
         "plan: the least predicted KLD at the size of llama.cpp's Q4_K_M file (5,373,408 bytes)");
    PlanRequest pr;
    pr.job_id = job;
    pr.target_bytes = 5373408;
    const PlanOutcome plan = plan_from_job(store, pr);
    save_recipe(plan.recipe, recipe_path, ow);
    fmt::print(
        "recipe {}: {:.3f} MB, {:.3f} bpw, predicted KLD {:.5f} (p99 {:.5f}, p99.9 {:.5f})\n",
        recipe_path, plan.recipe.predicted_size_bytes / 1e6, plan.recipe.predicted_bpw,
        plan.recipe.predicted_kld, plan.recipe.predicted_kld_p99, plan.recipe.predicted_kld_p999);

    step(5, "quantize the recipe into a GGUF (bit-exact ggml quantizers)");
    QuantizeOptions qo;
    qo.output_path = gguf_path;  // verify reuses it
    qo.force = force;
    const QuantizeResult qr = quantize_model(*model, plan.recipe, qo);
    fmt::print("{}: {} bytes, {:.3f} bpw\n", qr.path, qr.file_bytes, qr.bpw);

    step(6, fmt::format("verify: measured KLD of the recipe beside llama.cpp's uniform presets, "
                        "on held-out text ({})",
                        eval_text));
    VerifyOptions vo;
    vo.base_model = model_path;
    vo.text = eval_text;
    vo.store = store.path();  // where the recipe's sweep job is
    vo.out_dir = out_dir;
    vo.chunks = 8;
    const VerifyReport vr = run_verify(vo, {{"plan", "", recipe_path, ""},
                                            {"Q4_K_M", "", "", "Q4_K_M"},
                                            {"Q3_K_M", "", "", "Q3_K_M"}});
    fmt::print("{}", verify_table(vr));
    store.put_artifact(job, {"verify", true, verify_json(vr).dump()});
    nlohmann::json plan_art = {{"size_bytes", plan.recipe.predicted_size_bytes},
                               {"bpw", plan.recipe.predicted_bpw},
                               {"predicted_kld", plan.recipe.predicted_kld}};
    // Tails when the sweep recorded them (JSON has no NaN).
    if (std::isfinite(plan.recipe.predicted_kld_p99))
        plan_art["predicted_kld_p99"] = plan.recipe.predicted_kld_p99;
    if (std::isfinite(plan.recipe.predicted_kld_p999))
        plan_art["predicted_kld_p999"] = plan.recipe.predicted_kld_p999;
    nlohmann::json tensors = nlohmann::json::object(), frontier = nlohmann::json::array();
    for (const auto& [name, type] : plan.recipe.tensors)
        tensors[name] = ggml_type_display_name(type);
    for (const auto& p : plan.frontier)
        frontier.push_back({{"size_bytes", p.bytes},
                            {"bpw", bits_per_weight(static_cast<double>(p.bytes),
                                                    static_cast<double>(plan.n_params))},
                            {"predicted_kld", p.error}});
    plan_art["tensors"] = tensors;
    plan_art["frontier"] = frontier;
    store.put_artifact(job, {"plan:demo", true, plan_art.dump()});

    step(7, "report");
    write_output_file(report_path,
                      report::render_report_html(report::build_report_data(store, job)), ow);
    fmt::print(
        "report: {}\n  open it in a browser (it works offline), or run `quantlens serve` and "
        "visit http://127.0.0.1:8080 to browse job {}\n",
        fs::absolute(report_path).string(), job);
    return 0;
}

struct DemoOptions {
    std::string out_dir = "quantlens-demo";
    int64_t tokens = 2048;
    bool force = false;
};

}  // namespace

QL_COMMAND(demo, DemoOptions, "Run the whole pipeline on the bundled llama-8m model") {
    cmd.add_option("-o,--out-dir", o->out_dir, "Where the recipe, GGUF files and report go")
        ->capture_default_str();
    cmd.add_option("--tokens", o->tokens, "Evaluation tokens of the sweep")->capture_default_str();
    cmd.add_flag("--force,-f", o->force, "Overwrite the files of an earlier demo");
    return [o] { return run_demo(o->out_dir, o->tokens, o->force); };
}

}  // namespace quantlens::cli
