// The family registry, and config parsing dispatched through it (see family.h and
// formats/model_config.h).
#include <array>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap_file.h"
#include "model/families/family.h"

namespace quantlens {

// Defined one per family file.
const Family& llama_family();
const Family& mistral_family();
const Family& qwen2_family();
const Family& qwen3_family();
const Family& mixtral_family();
const Family& qwen2moe_family();
const Family& gemma2_family();
const Family& gemma3_family();
const Family& phi3_family();
const Family& gemma4_family();
const Family& qwen3next_family();
const Family& qwen35_family();
const Family& qwen35moe_family();
const Family& gptoss_family();
const Family& qwen3moe_family();
const Family& deepseek_v3_family();
const Family& glm4moe_family();

namespace {

// Adding a family: its file, its Arch id, and its function here.
const std::array<const Family*, 17>& registry() {
    static const std::array<const Family*, 17> r = {
        &llama_family(),
        &mistral_family(),
        &qwen2_family(),
        &qwen3_family(),
        &mixtral_family(),
        &qwen2moe_family(),
        &gemma2_family(),
        &gemma3_family(),
        &phi3_family(),
        &gemma4_family(),
        // Gated DeltaNet hybrids
        &qwen3next_family(),
        &qwen35_family(),
        &qwen35moe_family(),
        &gptoss_family(),
        &qwen3moe_family(),
        // Sigmoid grouped routing (DeepSeek-V3 with multi-head latent attention)
        &deepseek_v3_family(),
        &glm4moe_family(),
    };
    return r;
}

}  // namespace

std::span<const Family* const> families() {
    return registry();
}

const Family& family_of(Arch id) {
    for (const Family* f : families())
        if (f->id == id) return *f;
    QL_ASSERT(false);  // every Arch value is registered (tests/model/test_families.cpp)
}

const Family* find_hf_family(const std::string& hf, const std::string& model_type) {
    for (const Family* f : families())
        if (hf == f->hf_architecture) return f;
    if (!hf.empty()) return nullptr;
    for (const Family* f : families())
        if (model_type == f->model_type) return f;
    return nullptr;
}

std::string registered_hf_architectures() {
    std::string s;
    for (const Family* f : families()) s += (s.empty() ? "" : ", ") + f->hf_architecture;
    return s;
}

std::string registered_gguf_architectures() {
    std::string s;
    for (const Family* f : families()) {
        if (!f->claims_gguf || s.find(f->gguf_arch) != std::string::npos) continue;
        s += (s.empty() ? "" : ", ") + f->gguf_arch;
    }
    return s;
}

const char* arch_name(Arch arch) {
    return family_of(arch).name.c_str();
}

ModelConfig parse_hf_config(const std::string& json_text, const std::string& path) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(json_text);
    } catch (const nlohmann::json::exception& e) {
        fail("{}: not valid JSON: {}", path, e.what());
    }
    QL_CHECK(j.is_object(), "{}: expected a JSON object", path);

    std::string hf, model_type;
    if (auto a = j.find("architectures"); a != j.end() && a->is_array() && !a->empty()) {
        QL_CHECK((*a)[0].is_string(), "{}: architectures[0] is not a string", path);
        hf = (*a)[0].get<std::string>();
    }
    if (auto m = j.find("model_type"); m != j.end() && m->is_string())
        model_type = m->get<std::string>();
    QL_CHECK(hf != "Gemma4ForConditionalGeneration" && model_type != "gemma4",
             "{}: {} (model_type '{}') carries Gemma 4's vision and audio towers, which quantlens "
             "does not implement; it reads the text model, Gemma4ForCausalLM (model_type "
             "gemma4_text), only",
             path, hf.empty() ? "Gemma 4" : hf, model_type);
    const Family* f = find_hf_family(hf, model_type);
    QL_CHECK(f != nullptr, "{}: unsupported architecture '{}' (model_type '{}'); supported: {}",
             path, hf, model_type, registered_hf_architectures());

    ModelConfig c;
    c.arch = f->id;
    c.hf_architecture = f->hf_architecture;
    c.gguf_arch = f->gguf_arch;
    c.act = f->activation;  // transformers' default when config.json names none
    const HfConfigJson cfg{j, path, f->name.c_str()};
    read_hf_shared_fields(cfg, c);
    f->read_hf(cfg, c);
    QL_CHECK(!c.rope_proportional,
             "{}: rope_parameters uses rope_type \"proportional\", which quantlens implements for "
             "Gemma 4 only; {} would be computed wrongly",
             path, f->hf_architecture);
    QL_CHECK(c.act == f->activation,
             "{}: hidden_act / hidden_activation is \"{}\", but {}'s MLP uses \"{}\"; the engine "
             "would compute this model wrongly",
             path, c.act == Activation::SiLU ? "silu" : "gelu_pytorch_tanh", f->hf_architecture,
             f->activation == Activation::SiLU ? "silu" : "gelu_pytorch_tanh");
    QL_CHECK((c.rope_scaling.mscale == 0 && c.rope_scaling.mscale_all_dim == 0) || c.mla,
             "{}: yarn rope with DeepSeek's mscale / mscale_all_dim, which quantlens implements "
             "for DeepSeek-V3's attention only, so this {} model's positions would be computed "
             "wrongly",
             path, f->hf_architecture);
    QL_CHECK(c.rope_dims == 0 || c.rope == RopeStyle::Neox,
             "{}: partial_rotary_factor {} rotates {} of {} channels, but {} uses llama's "
             "interleaved rope on permuted q/k rows, where partial rotary is not implemented",
             path, static_cast<double>(c.rope_dims) / static_cast<double>(c.head_dim), c.rope_dims,
             c.head_dim, f->hf_architecture);
    check_config_consistent(c, path);
    return c;
}

ModelConfig load_hf_config(const std::string& path) {
    return parse_hf_config(read_text_file(path), path);
}

ModelConfig config_from_gguf(const GgufFile& g) {
    ModelConfig c;
    c.gguf_arch = g.get("general.architecture").as_string();
    const bool known = [&] {
        for (const Family* f : families())
            if (f->claims_gguf && f->gguf_arch == c.gguf_arch) return true;
        return false;
    }();
    QL_CHECK(known, "{}: unsupported GGUF architecture '{}' (supported: {})", g.path(), c.gguf_arch,
             registered_gguf_architectures());
    read_gguf_shared_fields(g, c);
    const Family* found = nullptr;
    for (const Family* f : families()) {
        if (f->gguf_arch != c.gguf_arch || !f->claims_gguf || !f->claims_gguf(c)) continue;
        QL_ASSERT(found == nullptr);  // family.h: one family per file
        found = f;
    }
    QL_CHECK(found != nullptr, "{}: no registered family of GGUF architecture '{}' reads this file",
             g.path(), c.gguf_arch);
    c.arch = found->id;
    c.hf_architecture = found->hf_architecture;
    found->read_gguf(g, c);
    QL_CHECK((c.rope_scaling.mscale == 0 && c.rope_scaling.mscale_all_dim == 0) || c.mla,
             "{}: {}.rope.scaling.yarn_log_multiplier is set; quantlens implements DeepSeek's "
             "yarn score scale for deepseek2 only",
             g.path(), c.gguf_arch);
    QL_CHECK(c.rope_dims == 0 || c.rope == RopeStyle::Neox,
             "{}: {}.rope.dimension_count is {}, less than the head size {}; partial rotary with "
             "llama's interleaved rope is not implemented",
             g.path(), c.gguf_arch, c.rope_dims, c.head_dim);
    check_config_consistent(c, g.path());
    return c;
}

}  // namespace quantlens
