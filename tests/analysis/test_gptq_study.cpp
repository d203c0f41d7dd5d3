// Does GPTQ (quant/gptq.h) pay on llama-8m? A measurement that prints its tables, with only
// loose sanity assertions (the figures themselves are the result; see the commit message).
//
// Setup: the F16-rounded model (as llama.cpp's F16 GGUF); H_cal = Σ xᵀx of every linear's
// input over the first 64 chunks of 512 tokens of calib.txt, H_eval the same over the first
// 16 chunks of eval.txt (held out). llama.cpp's imatrix (data/llama-8m.llamacpp-imatrix.dat)
// is the importance for the block parameters of both quantizers (the head has no entry:
// none for either).
//  1. Per tensor and type: relative output error on the held-out inputs,
//       err = ‖X(W − Ŵ)ᵀ‖_F / ‖XWᵀ‖_F = sqrt(Σ_r Δ_r H_eval Δ_rᵀ / Σ_r w_r H_eval w_rᵀ),
//     of (a) quantize() and (b) gptq_quantize() with H_cal; per type the mean, min and max
//     over tensors of err_b / err_a, its mean on the calibration inputs, and its mean in
//     act order.
//  2. Whole model fake-quantized to one type (every quantizable tensor; token_embd, not a
//     linear, by quantize() in both): mean KLD against the F16 model over the first 20
//     chunks of 512 of eval.txt, with llama.cpp's CPU numerics (--ggml-numerics), for (a),
//     (b) and (b) in act order.
// Runtime: ~1.5 min per part on the project's 2 cores.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "analysis/measure/chunks.h"
#include "analysis/measure/eval.h"
#include "analysis/measure/hessian.h"
#include "core/mmap_file.h"
#include "core/progress.h"
#include "engine/engine.h"
#include "engine/tokenizer.h"
#include "formats/imatrix.h"
#include "model/model.h"
#include "quant/gptq.h"
#include "quant/quant.h"
#include "support/f16_llama.h"
#include "support/hessian_quad_form.h"
#include "support/test_data.h"

using namespace quantlens;

namespace {

using quantlens::test_support::hessian_quad_form;
using quantlens::test_support::shared_path;

constexpr int64_t kCtx = 512, kCalChunks = 64, kHeldChunks = 16, kKldChunks = 20;

std::vector<float> dequantized(GgmlType type, const std::vector<uint8_t>& q, int64_t rows,
                               int64_t n) {
    std::vector<float> v(static_cast<size_t>(rows * n));
    dequantize(type, q.data(), v.data(), rows, n);
    return v;
}

struct Study {
    std::unique_ptr<Model> model;
    std::unique_ptr<Engine> base;  // F16-rounded weights, f32 compute
    Imatrix imatrix;
    HessianCollector cal, held;
    std::vector<const TensorInfo*> linears;  // quantizable tensors with a Hessian
};

Study& study() {
    static Study* s = [] {
        Progress::set_enabled(false);
        auto* st = new Study{};
        std::tie(st->model, st->base) = test_support::open_f16_llama_8m();
        st->imatrix = Imatrix::load(shared_path("data/llama-8m.llamacpp-imatrix.dat"));
        const Tokenizer tok = Tokenizer::load(*st->model);
        test_support::run_text_hessians(*st->base, tok, "data/calib.txt", kCtx, kCalChunks,
                                        st->cal);
        test_support::run_text_hessians(*st->base, tok, "data/eval.txt", kCtx, kHeldChunks,
                                        st->held);
        for (const TensorInfo& t : st->model->tensors())
            if (t.quantizable && st->cal.has(t.name)) st->linears.push_back(&t);
        return st;
    }();
    return *s;
}

const float* importance(const Study& s, const TensorInfo& t) {
    return s.imatrix.find(t.name) ? s.imatrix.importance(t.name, t.n_per_row()) : nullptr;
}

TEST(GptqStudy, OutputErrorPerTensorAndType) {
    Study& s = study();
    ASSERT_EQ(s.linears.size(), 8u * 7u + 1u);
    const GgmlType types[] = {GgmlType::Q8_0, GgmlType::Q6_K, GgmlType::Q5_K,  GgmlType::Q4_K,
                              GgmlType::Q3_K, GgmlType::Q2_K, GgmlType::IQ4_XS};
    struct Row {
        double sum_ratio = 0, sum_a = 0, sum_b = 0, sum_ratio_cal = 0, sum_ratio_act = 0;
        double min_ratio = 1e30, max_ratio = 0;
        std::string min_name, max_name;
        int n = 0;
    };
    std::map<GgmlType, Row> rows;
    std::map<std::string, std::map<GgmlType, double>> per_family;  // role → type → Σ ratio
    std::map<std::string, int> family_count;
    for (const TensorInfo* t : s.linears) {
        const int64_t R = t->n_rows(), n = t->n_per_row();
        const std::vector<float>& w = s.base->original(t->name);
        const std::vector<double> h_cal = s.cal.hessian(t->name);
        const std::vector<double> h_held = s.held.hessian(t->name);
        const GptqFactor f = gptq_factor(h_cal.data(), n);
        GptqOptions act;
        act.act_order = true;
        const GptqFactor f_act = gptq_factor(h_cal.data(), n, act);
        const double ref = hessian_quad_form(h_held, w.data(), R, n);
        const float* imp = importance(s, *t);
        const std::string family =
            t->layer < 0 ? "output" : t->name.substr(t->name.find('.', 4) + 1);
        family_count[family]++;
        for (GgmlType type : types) {
            std::vector<uint8_t> qa(ggml_row_size(type, n) * R), qb(qa.size()), qc(qa.size());
            quantize(type, w.data(), qa.data(), R, n, imp);
            gptq_quantize(type, w.data(), qb.data(), R, n, f, imp);
            gptq_quantize(type, w.data(), qc.data(), R, n, f_act, imp);
            std::vector<float> da = dequantized(type, qa, R, n), db = dequantized(type, qb, R, n),
                               dc = dequantized(type, qc, R, n);
            for (size_t i = 0; i < w.size(); ++i) {
                da[i] = w[i] - da[i];
                db[i] = w[i] - db[i];
                dc[i] = w[i] - dc[i];
            }
            const double ea = std::sqrt(hessian_quad_form(h_held, da.data(), R, n) / ref);
            const double eb = std::sqrt(hessian_quad_form(h_held, db.data(), R, n) / ref);
            const double ec = std::sqrt(hessian_quad_form(h_held, dc.data(), R, n) / ref);
            const double ratio = eb / ea;
            Row& r = rows[type];
            r.sum_ratio += ratio;
            r.sum_ratio_act += ec / ea;
            r.sum_ratio_cal += std::sqrt(hessian_quad_form(h_cal, db.data(), R, n) /
                                         hessian_quad_form(h_cal, da.data(), R, n));
            r.sum_a += ea;
            r.sum_b += eb;
            r.n++;
            if (ratio < r.min_ratio) r.min_ratio = ratio, r.min_name = t->name;
            if (ratio > r.max_ratio) r.max_ratio = ratio, r.max_name = t->name;
            per_family[family][type] += ratio;
        }
    }
    std::printf("\nHeld-out output error, GPTQ / plain (imatrix block parameters), %zu tensors\n",
                s.linears.size());
    std::printf(
        "(mean, min, max: of the ratio; cal: mean ratio on the calibration inputs; act: "
        "mean ratio in act order)\n");
    std::printf("%-6s %9s %9s %6s %6s %-25s %6s %-25s %6s %6s\n", "type", "err plain", "err gptq",
                "mean", "min", "(tensor)", "max", "(tensor)", "cal", "act");
    for (GgmlType type : types) {
        const Row& r = rows[type];
        std::printf("%-6s %9.5f %9.5f %6.3f %6.3f %-25s %6.3f %-25s %6.3f %6.3f\n",
                    quant_traits(type).name, r.sum_a / r.n, r.sum_b / r.n, r.sum_ratio / r.n,
                    r.min_ratio, r.min_name.c_str(), r.max_ratio, r.max_name.c_str(),
                    r.sum_ratio_cal / r.n, r.sum_ratio_act / r.n);
    }
    std::printf("\nMean held-out ratio per family\n%-18s", "family");
    for (GgmlType type : types) std::printf(" %6s", quant_traits(type).name);
    std::printf("\n");
    for (const auto& [family, by_type] : per_family) {
        std::printf("%-18s", family.c_str());
        for (GgmlType type : types) std::printf(" %6.3f", by_type.at(type) / family_count[family]);
        std::printf("\n");
    }
    // Sanity only: GPTQ minimizes the calibration error greedily; held out it should not be
    // worse on average at 4-5 bits.
    EXPECT_LT(rows[GgmlType::Q4_K].sum_ratio / rows[GgmlType::Q4_K].n, 1.0);
}

TEST(GptqStudy, WholeModelKld) {
    Study& s = study();
    EngineOptions eo;
    eo.f16_weights = true;
    eo.ggml_numerics = true;
    Engine base(*s.model, eo), q(*s.model, eo);
    EvalOptions o;
    o.max_chunks = kKldChunks;
    o.progress = false;
    const EvalTokens chunks = make_eval_tokens(
        Tokenizer::load(*s.model), read_text_file(shared_path("data/eval.txt")), "eval.txt", o);
    GptqOptions act;
    act.act_order = true;
    std::map<std::string, GptqFactor> factors, factors_act;
    for (const TensorInfo* t : s.linears) {
        const std::vector<double> h = s.cal.hessian(t->name);
        factors.emplace(t->name, gptq_factor(h.data(), t->n_per_row()));
        factors_act.emplace(t->name, gptq_factor(h.data(), t->n_per_row(), act));
    }
    std::printf("\nWhole model, mean KLD vs F16 over %lld chunks of %lld (ggml numerics)\n",
                static_cast<long long>(kKldChunks), static_cast<long long>(kCtx));
    const char* names[] = {"plain", "gptq", "gptq act order"};
    for (GgmlType type : {GgmlType::Q5_K, GgmlType::Q4_K}) {
        double kld[3] = {};
        for (int mode = 0; mode < 3; ++mode) {
            q.clear_overrides();
            const auto& fs = mode == 2 ? factors_act : factors;
            for (const TensorInfo& t : s.model->tensors()) {
                if (!t.quantizable) continue;
                const int64_t R = t.n_rows(), n = t.n_per_row();
                const std::vector<float>& w = q.original(t.name);
                const float* imp = importance(s, t);
                std::vector<uint8_t> b(ggml_row_size(type, n) * R);
                const auto it = fs.find(t.name);
                if (mode > 0 && it != fs.end())
                    gptq_quantize(type, w.data(), b.data(), R, n, it->second, imp);
                else
                    quantize(type, w.data(), b.data(), R, n, imp);
                q.set_override(t.name, dequantized(type, b, R, n), type);
            }
            const EvalResult r = evaluate(q, chunks, o, {&base, nullptr});
            ASSERT_TRUE(r.kld);
            kld[mode] = r.kld->kld_mean;
            std::printf("%-5s %-15s KLD %.6f ± %.6f  same top-1 %.2f %%  PPL %.3f (base %.3f)\n",
                        quant_traits(type).name, names[mode], r.kld->kld_mean, r.kld->kld_err,
                        100 * r.kld->same_top, r.kld->ppl, r.kld->ppl_base);
        }
        std::printf("%-5s KLD ratio to plain: gptq %.3f, act order %.3f\n", quant_traits(type).name,
                    kld[1] / kld[0], kld[2] / kld[0]);
        EXPECT_GT(kld[1], 0);
    }
}

}  // namespace
