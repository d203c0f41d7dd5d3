// GPTQ quantization_config export: see gptq_config.h.
#include "formats/gptq_config.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"

namespace quantlens {
namespace {

using json = nlohmann::ordered_json;

struct FusedFamily {
    const char* fused;
    std::vector<std::string> parts;
};

const std::vector<FusedFamily>& fused_families() {
    static const std::vector<FusedFamily> f = {{"qkv_proj", {"q_proj", "k_proj", "v_proj"}},
                                               {"gate_up_proj", {"gate_proj", "up_proj"}}};
    return f;
}

std::string strip_suffix(const std::string& s, const std::string& suffix) {
    if (s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0)
        return s.substr(0, s.size() - suffix.size());
    return s;
}

// The module a tensor belongs to: its name without the parameter ("weight", "bias").
std::string module_of(const std::string& hf_tensor) {
    const auto dot = hf_tensor.rfind('.');
    return dot == std::string::npos ? hf_tensor : hf_tensor.substr(0, dot);
}

std::string escaped(const std::string& s) {
    const std::string a = anchored_pattern(s);
    return a.substr(1, a.size() - 2);
}

bool marlin_format(const GptqFormat& f) {
    return f.sym && (f.bits == 4 || f.bits == 8);
}

json format_json(const GptqFormat& f) {
    return {{"bits", f.bits}, {"group_size", f.group}, {"sym", f.sym}};
}

}  // namespace

std::string vllm_fused_module(const std::string& hf_module) {
    const auto dot = hf_module.rfind('.');
    const std::string leaf = dot == std::string::npos ? hf_module : hf_module.substr(dot + 1);
    const std::string parent = dot == std::string::npos ? "" : hf_module.substr(0, dot + 1);
    for (const auto& fam : fused_families())
        if (std::find(fam.parts.begin(), fam.parts.end(), leaf) != fam.parts.end())
            return parent + fam.fused;
    return "";
}

std::string gptq_quantization_config(
    const Recipe& recipe, const std::vector<std::pair<std::string, std::string>>& model_tensors) {
    if (!recipe.is_gptq()) {
        // A ggml recipe: its block formats have no GPTQ equivalent; never round them to one.
        for (const auto& [name, type] : recipe.tensors)
            QL_CHECK(type == GgmlType::F16 || type == GgmlType::BF16 || type == GgmlType::F32,
                     "--export-gptq: tensor '{}' is {}, which GPTQ cannot store (GPTQ packs "
                     "2/3/4/8-bit integers in groups of 32/64/128 or per channel; no ggml type is "
                     "one of these). Measure GPTQ's own formats (sweep --types gptq) and plan "
                     "with --format gptq",
                     name, ggml_type_display_name(type));
        fail("--export-gptq: the recipe quantizes no tensor; nothing to export");
    }
    std::map<std::string, std::string> hf_of;  // GGUF → HF tensor name
    for (const auto& [gguf, hf] : model_tensors) hf_of[gguf] = hf;

    // Planned modules (HF path → format), checked against the model.
    std::map<std::string, GptqFormat> modules;
    std::map<std::string, std::string> tensor_of_module;
    for (const auto& [tensor, f] : recipe.gptq_tensors) {
        auto it = hf_of.find(tensor);
        QL_CHECK(it != hf_of.end(), "--export-gptq: recipe tensor '{}' is not in the model",
                 tensor);
        QL_CHECK(it->second.size() > 7 && strip_suffix(it->second, ".weight") != it->second,
                 "--export-gptq: tensor '{}' ({}) is not a Linear weight", tensor, it->second);
        QL_CHECK(gptq_bits_supported(f.bits) && gptq_group_supported(f.group),
                 "--export-gptq: tensor '{}': {}-bit group {} is not a GPTQ format", tensor, f.bits,
                 f.group);
        const std::string module = strip_suffix(it->second, ".weight");
        modules[module] = f;
        tensor_of_module[module] = tensor;
    }

    // Fused groups (vLLM's names) must be whole and of one format.
    std::map<std::string, std::vector<std::string>> fused;  // fused module → planned parts
    for (const auto& [module, f] : modules) {
        const std::string fm = vllm_fused_module(module);
        if (!fm.empty()) fused[fm].push_back(module);
    }
    std::set<std::string> model_modules;
    for (const auto& [gguf, hf] : model_tensors) model_modules.insert(module_of(hf));
    for (const auto& [fm, parts] : fused) {
        for (const auto& fam : fused_families()) {
            if (fm.size() < std::string(fam.fused).size() ||
                fm.compare(fm.size() - std::string(fam.fused).size(), std::string::npos,
                           fam.fused) != 0)
                continue;
            const std::string parent = fm.substr(0, fm.size() - std::string(fam.fused).size());
            for (const auto& leaf : fam.parts)
                QL_CHECK(!model_modules.count(parent + leaf) || modules.count(parent + leaf),
                         "--export-gptq: '{}' is quantized but '{}' is not; vLLM fuses them into "
                         "'{}', which takes one format",
                         tensor_of_module[parts.front()], parent + leaf, fm);
        }
        for (const auto& p : parts)
            QL_CHECK(modules[p] == modules[parts.front()],
                     "--export-gptq: tensors '{}' ({}) and '{}' ({}) differ; vLLM fuses them into "
                     "'{}', which takes one format",
                     tensor_of_module[parts.front()], gptq_format_name(modules[parts.front()]),
                     tensor_of_module[p], gptq_format_name(modules[p]), fm);
    }

    // The base: the most common format, among the non-Marlin ones when there are any.
    bool any_non_marlin = false;
    for (const auto& [m, f] : modules) any_non_marlin |= !marlin_format(f);
    std::map<std::string, std::pair<int, GptqFormat>> counts;
    for (const auto& [m, f] : modules)
        if (!any_non_marlin || !marlin_format(f)) {
            auto& c = counts[gptq_format_name(f)];
            c.first++;
            c.second = f;
        }
    GptqFormat base = counts.begin()->second.second;
    int best = 0;
    for (const auto& [name, c] : counts)
        if (c.first > best) best = c.first, base = c.second;

    json dynamic = json::object();
    std::set<std::string> done;
    for (const auto& [module, f] : modules) {
        if (done.count(module)) continue;
        const std::string fm = vllm_fused_module(module);
        std::string pattern;
        if (!fm.empty()) {
            const auto dot = module.rfind('.');
            const std::string parent = module.substr(0, dot);
            std::string alternatives;
            for (const auto& fam : fused_families())
                if (fm.size() >= std::string(fam.fused).size() &&
                    fm.compare(fm.size() - std::string(fam.fused).size(), std::string::npos,
                               fam.fused) == 0) {
                    for (const auto& leaf : fam.parts)
                        if (modules.count(parent + "." + leaf)) {
                            alternatives += escaped(leaf) + "|";
                            done.insert(parent + "." + leaf);
                        }
                    alternatives += escaped(fam.fused);
                }
            pattern = "^" + escaped(parent) + "\\.(?:" + alternatives + ")$";
        } else {
            pattern = anchored_pattern(module);
            done.insert(module);
        }
        if (!(f == base)) dynamic["+:" + pattern] = format_json(f);
    }
    const bool lm_head = modules.count("lm_head") != 0;
    std::set<std::string> excluded;
    for (const auto& [gguf, hf] : model_tensors) {
        const std::string module = module_of(hf);
        if (modules.count(module) || excluded.count(module)) continue;
        excluded.insert(module);
        dynamic["-:" + anchored_pattern(module)] = json::object();
    }
    json cfg = {{"quant_method", "gptq"},  {"checkpoint_format", "gptq"},
                {"bits", base.bits},       {"group_size", base.group},
                {"sym", base.sym},         {"desc_act", recipe.gptq_desc_act},
                {"lm_head", lm_head},      {"damp_percent", 0.01},
                {"true_sequential", true}, {"dynamic", dynamic}};
    return cfg.dump(2) + "\n";
}

}  // namespace quantlens
