// `quantlens inspect MODEL [--json]`: the tensor table of an HF directory or a GGUF file
// (names both ways, ggml shape, storage type, params, bytes, layer, role, quantizable) and
// totals (params, bytes, bits per weight). --json prints the same as one JSON object.
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/ggml_type.h"
#include "hub/resolve.h"
#include "model/model.h"
#include "model/names.h"

namespace quantlens::cli {
namespace {

struct InspectOptions {
    std::string model;
    bool json = false;
};

std::string source_name(Model::Source s) {
    return s == Model::Source::Gguf ? "gguf" : "huggingface";
}

double model_bpw(const Model& m) {
    return bits_per_weight(static_cast<double>(m.total_bytes()),
                           static_cast<double>(m.total_params()));
}

nlohmann::ordered_json config_json(const ModelConfig& c) {
    nlohmann::ordered_json j;
    j["arch"] = arch_name(c.arch);
    j["hf_architecture"] = c.hf_architecture;
    j["gguf_arch"] = c.gguf_arch;
    j["n_layers"] = c.n_layers;
    j["hidden"] = c.hidden;
    j["n_heads"] = c.n_heads;
    j["n_kv_heads"] = c.n_kv_heads;
    j["head_dim"] = c.head_dim;
    j["ffn"] = c.ffn;
    j["vocab"] = c.vocab;
    j["n_experts"] = c.n_experts;
    j["n_experts_used"] = c.n_experts_used;
    j["rope_theta"] = c.rope_theta;
    j["rms_eps"] = c.rms_eps;
    j["tie_embeddings"] = c.tie_embeddings;
    // The layer features beyond Llama's, so a user sees what the engine will compute.
    j["rope_dims"] = c.rotary_dims();
    j["rope_scaling"] = c.rope_scaling.kind == RopeScaling::Kind::None     ? "none"
                        : c.rope_scaling.kind == RopeScaling::Kind::Linear ? "linear"
                        : c.rope_scaling.kind == RopeScaling::Kind::Llama3 ? "llama3"
                                                                           : "longrope";
    if (c.rope_theta_swa > 0) j["rope_theta_sliding"] = c.rope_theta_swa;
    j["activation"] = c.act == Activation::SiLU ? "silu" : "gelu_pytorch_tanh";
    j["sliding_window"] = c.sliding_window;
    nlohmann::ordered_json sliding = nlohmann::ordered_json::array();
    for (int64_t l = 0; l < c.n_layers; ++l)
        if (c.is_sliding(l)) sliding.push_back(l);
    j["sliding_layers"] = sliding;
    if (c.attn_softcap > 0) j["attn_softcap"] = c.attn_softcap;
    if (c.final_softcap > 0) j["final_softcap"] = c.final_softcap;
    return j;
}

int run_inspect(const InspectOptions& o) {
    const std::unique_ptr<Model> m = Model::open(resolve_model_path(o.model));
    const ModelConfig& c = m->config();
    if (o.json) {
        nlohmann::ordered_json j;
        j["model"] = o.model;
        j["source"] = source_name(m->source());
        j["config"] = config_json(c);
        nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
        for (const TensorInfo& t : m->tensors()) {
            nlohmann::ordered_json e;
            e["name"] = t.name;
            e["hf_name"] = t.hf_name;
            e["ne"] = t.ne;
            e["type"] = ggml_type_display_name(t.type);
            e["params"] = t.n_elements();
            e["bytes"] = t.nbytes();
            e["layer"] = t.layer;
            e["role"] = role_name(t.role);
            e["quantizable"] = t.quantizable;
            tensors.push_back(std::move(e));
        }
        j["tensors"] = std::move(tensors);
        j["totals"] = {{"tensors", m->tensors().size()},
                       {"layers", c.n_layers},
                       {"params", m->total_params()},
                       {"bytes", m->total_bytes()},
                       {"bits_per_weight", model_bpw(*m)}};
        fmt::print("{}\n", j.dump(2));
        return 0;
    }

    fmt::print("{} ({}): {} / {}, {} layers, hidden {}, heads {}/{} (head {}), ffn {}, vocab {}",
               o.model, source_name(m->source()), c.hf_architecture, c.gguf_arch, c.n_layers,
               c.hidden, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn, c.vocab);
    if (c.is_moe()) fmt::print(", {} experts (top-{})", c.n_experts, c.n_experts_used);
    if (c.tie_embeddings) fmt::print(", tied embeddings");
    fmt::print("\n\n");

    size_t w_name = 4, w_hf = 7;
    for (const TensorInfo& t : m->tensors()) {
        w_name = std::max(w_name, t.name.size());
        w_hf = std::max(w_hf, t.hf_name.size());
    }
    fmt::print("{:<{}}  {:<{}}  {:<18}  {:<7}  {:>11}  {:>11}  {:>5}  {:<12}  {}\n", "gguf name",
               w_name, "hf name", w_hf, "shape (ggml ne)", "type", "params", "bytes", "layer",
               "role", "quant");
    for (const TensorInfo& t : m->tensors()) {
        fmt::print("{:<{}}  {:<{}}  {:<18}  {:<7}  {:>11}  {:>11}  {:>5}  {:<12}  {}\n", t.name,
                   w_name, t.hf_name.empty() ? "-" : t.hf_name, w_hf, format_shape(t.ne),
                   ggml_type_display_name(t.type), t.n_elements(), t.nbytes(),
                   t.layer < 0 ? std::string("-") : std::to_string(t.layer), role_name(t.role),
                   t.quantizable ? "yes" : "no");
    }
    fmt::print(
        "\ntotal: {} tensors, {} layers, {} params, {} bytes ({:.2f} MiB), {:.3f} bits per "
        "weight\n",
        m->tensors().size(), c.n_layers, m->total_params(), m->total_bytes(),
        static_cast<double>(m->total_bytes()) / (1024.0 * 1024.0), model_bpw(*m));
    return 0;
}

}  // namespace
}  // namespace quantlens::cli

QL_COMMAND(inspect, "Tensor table of a model (HF directory or GGUF file)") {
    auto opts = std::make_shared<quantlens::cli::InspectOptions>();
    cmd.add_option("MODEL", opts->model,
                   "Hugging Face directory, .gguf file, or ORG/NAME pulled before")
        ->required();
    cmd.add_flag("--json", opts->json, "Print one JSON object instead of the table");
    return [opts] { return quantlens::cli::run_inspect(*opts); };
}
