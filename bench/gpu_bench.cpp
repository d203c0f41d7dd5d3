// GPU benchmark (bench/gpu_bench.sh runs it on the device): a Llama-3-8B-shaped model with
// random BF16 weights built on the GPU, then
//  1. eval throughput: embed + 32 layers + full-vocabulary head over all tokens;
//  2. the sweep: prepare (reference + prefix cache), evaluate(from) for every start layer,
//     GPU fake quantization per (tensor kind, type), a few complete (tensor, type) units,
//     and the extrapolated 226-tensor × 8-type sweep.
// Prints one JSON object (also written to --json PATH).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <cuda_runtime.h>
#include <nlohmann/json.hpp>

#include "engine/cuda/cuda_engine.h"
#include "engine/cuda/cuda_sweep.h"
#include "quant/quant.h"

using namespace quantlens;
using namespace quantlens::cuda;
using json = nlohmann::json;

namespace {

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

ModelConfig llama3_8b(bool small) {
    ModelConfig c;
    c.arch = Arch::Llama;
    c.n_layers = small ? 4 : 32;
    c.hidden = small ? 512 : 4096;
    c.n_heads = small ? 4 : 32;
    c.n_kv_heads = small ? 2 : 8;
    c.head_dim = 128;
    c.ffn = small ? 1536 : 14336;
    c.vocab = small ? 8192 : 128256;
    c.rms_eps = 1e-5;
    c.rope_theta = 500000.0;
    c.tie_embeddings = false;
    return c;
}

// DeepSeek-V3's attention (MLA: q_lora 1536, kv_lora 512, rope 64, nope 128, v 128, 128
// heads) and its dense MLP (18,432 wide: the first_k_dense_replace layers), `layers` of them.
ModelConfig deepseek_v3_dense(int64_t layers) {
    ModelConfig c;
    c.arch = Arch::DeepseekV3;
    c.n_layers = layers;
    c.hidden = 7168;
    c.n_heads = c.n_kv_heads = 128;
    c.head_dim = 64;
    c.mla = true;
    c.q_lora_rank = 1536;
    c.kv_lora_rank = 512;
    c.qk_nope_dim = 128;
    c.v_head_dim = 128;
    c.ffn = 18432;
    c.vocab = 129280;
    c.rms_eps = 1e-6;
    c.rope_theta = 10000.0;
    c.tie_embeddings = false;
    return c;
}

std::string kind_of(const std::string& name) {
    const auto dot = name.find('.', name.find('.') + 1);
    return name.rfind("blk.", 0) == 0 ? name.substr(dot + 1) : name;
}

int64_t layer_of(const std::string& name, int64_t n_layers) {
    if (name.rfind("blk.", 0) == 0) return std::stoll(name.substr(4));
    return name == "token_embd.weight" ? 0 : n_layers;
}

}  // namespace

int main(int argc, char** argv) {
    int64_t n_tokens = 8192, ctx = 512, reps = 3;
    bool small = false;
    int64_t deepseek_layers = 0;  // > 0: DeepSeek-V3's MLA and dense MLP, eval only
    double budget_gb = 0;         // > 0: stream the weights through this much GPU memory
    std::string json_path;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
        if (a == "--tokens")
            n_tokens = std::stoll(next());
        else if (a == "--ctx")
            ctx = std::stoll(next());
        else if (a == "--reps")
            reps = std::stoll(next());
        else if (a == "--json")
            json_path = next();
        else if (a == "--small")
            small = true;
        else if (a == "--weight-budget-gb")
            budget_gb = std::stod(next());
        else if (a == "--deepseek-v3-layers")
            deepseek_layers = std::stoll(next());
        else {
            std::fprintf(
                stderr,
                "usage: ql_gpu_bench [--tokens N] [--ctx T] [--reps R] [--json PATH] [--small] "
                "[--weight-budget-gb G] [--deepseek-v3-layers L]\n");
            return 2;
        }
    }
    try {
        std::string why;
        if (!device_available(&why)) {
            std::fprintf(stderr, "ql_gpu_bench: %s\n", why.c_str());
            return 1;
        }
        const ModelConfig c =
            deepseek_layers > 0 ? deepseek_v3_dense(deepseek_layers) : llama3_8b(small);
        const int64_t n_chunks = n_tokens / ctx, N = n_chunks * ctx, L = c.n_layers;
        json out;
        out["device"] = device_description();
        out["shape"] = {
            {"layers", L},  {"hidden", c.hidden}, {"heads", c.n_heads}, {"kv_heads", c.n_kv_heads},
            {"ffn", c.ffn}, {"vocab", c.vocab},   {"tokens", N},        {"ctx", ctx}};
        auto engine = std::make_unique<CudaEngine>(
            c, CudaEngineOptions{.max_tokens = N,
                                 .weight_budget_bytes = static_cast<int64_t>(budget_gb * 1e9)});
        out["streaming"] = engine->streaming();
        double t = now_s();
        engine->load_random_weights(20261123);
        out["init_s"] = now_s() - t;
        int64_t params = 0;
        for (const auto& s : engine->weight_specs()) params += engine->n_elements(s.name);
        out["params"] = params;

        std::vector<int32_t> tokens(static_cast<size_t>(N));
        uint64_t s = 7;
        for (int64_t i = 0; i < N; ++i) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            tokens[static_cast<size_t>(i)] =
                i % ctx == 0 ? 1 : static_cast<int32_t>((s >> 33) % static_cast<uint64_t>(c.vocab));
        }

        // ---- 1. eval throughput ----
        {
            int32_t* d_tok;
            float *d_h, *d_logits;
            cudaMalloc(&d_tok, N * 4);
            cudaMalloc(&d_h, N * c.hidden * 4);
            cudaMalloc(&d_logits, N * c.vocab * 4);
            cudaMemcpy(d_tok, tokens.data(), N * 4, cudaMemcpyHostToDevice);
            cudaEvent_t e0, e1, e2, e3;
            cudaEventCreate(&e0), cudaEventCreate(&e1), cudaEventCreate(&e2), cudaEventCreate(&e3);
            std::vector<double> total, layers, head;
            for (int64_t r = 0; r <= reps; ++r) {
                cudaEventRecord(e0);
                engine->embed(d_tok, N, d_h);
                cudaEventRecord(e1);
                for (int64_t l = 0; l < L; ++l) engine->run_layer(l, d_h, n_chunks, ctx);
                cudaEventRecord(e2);
                engine->head(d_h, n_chunks, ctx, 0, d_logits);
                cudaEventRecord(e3);
                cudaEventSynchronize(e3);
                float a, b, d;
                cudaEventElapsedTime(&a, e0, e3);
                cudaEventElapsedTime(&b, e1, e2);
                cudaEventElapsedTime(&d, e2, e3);
                if (r > 0)
                    total.push_back(a / 1e3), layers.push_back(b / 1e3), head.push_back(d / 1e3);
            }
            std::sort(total.begin(), total.end());
            std::sort(layers.begin(), layers.end());
            std::sort(head.begin(), head.end());
            const double tt = total[total.size() / 2];
            const double flops = 2.0 * static_cast<double>(params) * static_cast<double>(N);
            out["eval"] = {{"seconds", tt},
                           {"tokens_per_s", static_cast<double>(N) / tt},
                           {"tflops_2x_params", flops / tt / 1e12},
                           {"layers_s", layers[layers.size() / 2]},
                           {"head_s", head[head.size() / 2]}};
            std::fprintf(stderr, "eval: %.4f s for %lld tokens = %.0f tokens/s, %.0f TFLOP/s\n", tt,
                         static_cast<long long>(N), N / tt, flops / tt / 1e12);
            cudaFree(d_tok), cudaFree(d_h), cudaFree(d_logits);
        }
        if (deepseek_layers > 0) {  // the sweep's part is the Llama shape's
            out["eval"]["layer_s"] = out["eval"]["layers_s"].get<double>() / L;
            const std::string text = out.dump(2);
            std::printf("%s\n", text.c_str());
            if (!json_path.empty()) std::ofstream(json_path) << text << "\n";
            return 0;
        }

        // ---- 2. the sweep ----
        EvalChunks chunks;
        chunks.n_chunks = n_chunks;
        chunks.n_ctx = ctx;
        chunks.first_scored = ctx / 2;
        chunks.tokens = tokens;
        auto backend = make_cuda_sweep_backend(std::move(engine));
        CudaEngine& eng = backend->engine();
        t = now_s();
        backend->prepare(chunks);
        out["sweep_prepare_s"] = now_s() - t;

        backend->evaluate(L, false);  // warm-up
        std::vector<double> eval_from(static_cast<size_t>(L + 1));
        for (int64_t l = 0; l <= L; ++l) {
            t = now_s();
            backend->evaluate(l, false);
            eval_from[static_cast<size_t>(l)] = now_s() - t;
        }
        t = now_s();
        backend->evaluate(0, true);
        const double eval_embd = now_s() - t;
        out["evaluate_from_s"] = eval_from;

        // The sweep's 8 default types, all with a GPU kernel (fake_quant.h).
        const std::vector<GgmlType> gpu_types{GgmlType::Q8_0,  GgmlType::Q6_K,   GgmlType::Q5_K,
                                              GgmlType::Q4_K,  GgmlType::IQ4_XS, GgmlType::Q3_K,
                                              GgmlType::IQ3_S, GgmlType::Q2_K};
        const std::vector<std::string> all = quantizable_weights(c);
        std::map<std::string, std::map<std::string, double>> fq;  // kind → type → s
        for (const std::string& name : all) {
            const std::string kind = kind_of(name);
            if (fq.count(kind)) continue;
            for (GgmlType ty : gpu_types) {
                eng.override_with_type(name, ty);  // warm-up (scratch allocation)
                eng.clear_override(name);
                eng.synchronize();
                t = now_s();
                eng.override_with_type(name, ty);
                eng.synchronize();
                const double dt = now_s() - t;
                eng.clear_override(name);
                fq[kind][ggml_type_display_name(ty)] = dt;
            }
        }
        out["fake_quant_s"] = fq;

        // Complete units: GPU fake quant + evaluate + clear, with their ΔKLD.
        json units = json::array();
        for (const std::string name : {"blk.0.attn_v.weight", "blk.15.ffn_down.weight",
                                       "blk.31.attn_q.weight", "output.weight"}) {
            if (!std::count(all.begin(), all.end(), name)) continue;
            for (GgmlType ty : {GgmlType::Q4_K, GgmlType::Q2_K}) {
                t = now_s();
                eng.override_with_type(name, ty);
                const PerturbedStats st = backend->evaluate(layer_of(name, L), false);
                eng.clear_override(name);
                const double dt = now_s() - t;
                units.push_back({{"tensor", name},
                                 {"type", ggml_type_display_name(ty)},
                                 {"seconds", dt},
                                 {"kld_mean", st.kld_sum / st.n_scored},
                                 {"top1_agree", static_cast<double>(st.top1_same) / st.n_scored}});
            }
        }
        out["units"] = units;

        // The CPU path (imatrix sweeps still take it), measured on one tensor for comparison.
        {
            const std::string name = L > 0 ? "blk.0.attn_k.weight" : all.front();
            const std::vector<float> orig = eng.original(name);
            std::vector<float> q(orig.size());
            const int64_t rows = static_cast<int64_t>(orig.size()) / c.hidden;
            t = now_s();
            fake_quantize(GgmlType::IQ4_XS, orig.data(), q.data(), rows, c.hidden);
            const double dt = now_s() - t;
            out["cpu_iq4_xs_s_per_melem"] = dt / (static_cast<double>(orig.size()) / 1e6);
        }

        // Extrapolation: every tensor × the 8 types, each unit a GPU fake quant + evaluate.
        double total8 = 0;
        for (const std::string& name : all) {
            const int64_t l = layer_of(name, L);
            const double ev =
                name == "token_embd.weight" ? eval_embd : eval_from[static_cast<size_t>(l)];
            for (const auto& [ty, sec] : fq[kind_of(name)]) total8 += sec + ev;
        }
        out["sweep_extrapolated"] = {
            {"tensors", all.size()},
            {"seconds_8_types", total8},
            {"per_unit_mean_s", total8 / (8.0 * static_cast<double>(all.size()))}};
        std::fprintf(stderr, "sweep: prepare %.2f s, full 226x8 extrapolated %.1f s\n",
                     out["sweep_prepare_s"].get<double>(), total8);
        const std::string text = out.dump(2);
        std::printf("%s\n", text.c_str());
        if (!json_path.empty()) std::ofstream(json_path) << text << "\n";
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ql_gpu_bench: %s\n", e.what());
        return 1;
    }
}
