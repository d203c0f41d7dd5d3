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
#include "model/inspect_json.h"
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

int run_inspect(const InspectOptions& o) {
    const std::unique_ptr<Model> m = Model::open(resolve_model_path(o.model));
    const ModelConfig& c = m->config();
    if (o.json) {
        nlohmann::ordered_json j;
        j["model"] = o.model;
        j.update(model_inspect_json(*m));  // the same document the web app shows
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

QL_COMMAND(inspect, InspectOptions, "Tensor table of a model (HF directory or GGUF file)") {
    cmd.add_option("MODEL", o->model,
                   "Hugging Face directory, .gguf file, or ORG/NAME pulled before")
        ->required();
    cmd.add_flag("--json", o->json, "Print one JSON object instead of the table");
    return [o] { return quantlens::cli::run_inspect(*o); };
}

}  // namespace quantlens::cli
