// Test helper (header-only): a GPTQ quantization_config checker written from the rules the
// loaders document, independent of quantlens' exporter (formats/gptq_config.cpp):
//   vLLM  GPTQConfig: quant_method "gptq"; bits ∈ {2, 3, 4, 8} ("Currently, only 2/3/4/8-bit
//         weight quantization is supported for GPTQ"), for the base and every dynamic
//         override; checkpoint_format "gptq" (v2 is GPTQModel-internal); `lm_head` a bool;
//         dynamic keys "+:REGEX" / "-:REGEX" / "REGEX", looked up with re.match on the
//         layer prefix, first match wins, "-:" skips the layer; fused layers (qkv_proj,
//         gate_up_proj) are looked up by the fused name; Marlin (chosen when the base is
//         symmetric 4/8-bit) builds every layer with Marlin, which takes 4/8-bit symmetric only.
//   GPTQModel QuantizeConfig / BaseQuantLinear: SUPPORTS_BITS [2, 3, 4, 8], group sizes
//         −1, 32, 64, 128 (and 16, which vLLM's Marlin lacks, so we refuse it), desc_act and
//         sym booleans; dynamic overrides may set bits, group_size, sym, desc_act.
//   quantlens: every pattern anchored (^…$) so that no module matches two patterns, which
//         makes first-match and last-match lookups agree.
// check_gptq_config returns "" when every rule holds, else the first broken rule.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <vector>

namespace quantlens::test_support {

struct GptqModuleFormat {
    int bits = 0, group = 0;
    bool sym = true;
    bool operator==(const GptqModuleFormat&) const = default;
};

namespace gptq_detail {

inline bool allowed_bits(const nlohmann::json& v) {
    return v.is_number_integer() && (v == 2 || v == 3 || v == 4 || v == 8);
}
inline bool allowed_group(const nlohmann::json& v) {
    return v.is_number_integer() && (v == -1 || v == 32 || v == 64 || v == 128);
}
inline bool marlin(const GptqModuleFormat& f) {
    return f.sym && (f.bits == 4 || f.bits == 8);
}

struct Rule {
    bool negative = false;
    std::string pattern;
    std::regex re;
    nlohmann::json overrides;
};

// re.match: anchored at the start only.
inline bool py_match(const Rule& r, const std::string& name) {
    return std::regex_search(name, r.re, std::regex_constants::match_continuous);
}

}  // namespace gptq_detail

// What a loader resolves for MODULE: nullopt when excluded ("-:"), else the format.
inline std::optional<GptqModuleFormat> resolve_gptq_module(const nlohmann::json& cfg,
                                                           const std::string& module) {
    GptqModuleFormat f{cfg.at("bits").get<int>(), cfg.at("group_size").get<int>(),
                       cfg.at("sym").get<bool>()};
    if (!cfg.contains("dynamic")) return f;
    for (const auto& [key, value] : cfg["dynamic"].items()) {
        const bool neg = key.rfind("-:", 0) == 0;
        const std::string pat = key.rfind("+:", 0) == 0 || neg ? key.substr(2) : key;
        if (!std::regex_search(module, std::regex(pat), std::regex_constants::match_continuous))
            continue;
        if (neg) return std::nullopt;
        if (value.contains("bits")) f.bits = value["bits"].get<int>();
        if (value.contains("group_size")) f.group = value["group_size"].get<int>();
        if (value.contains("sym")) f.sym = value["sym"].get<bool>();
        return f;
    }
    return f;
}

// modules: every module path of the model (HF names, "lm_head" included); fused: vLLM's
// fused name → its parts. expected (optional): the format each quantized module must get;
// every other module must then be excluded.
inline std::string check_gptq_config(
    const std::string& text, const std::vector<std::string>& modules,
    const std::map<std::string, std::vector<std::string>>& fused = {},
    const std::map<std::string, GptqModuleFormat>* expected = nullptr) {
    using nlohmann::json;
    using namespace gptq_detail;
    json cfg;
    try {
        cfg = json::parse(text);
    } catch (const std::exception& e) {
        return std::string("not JSON: ") + e.what();
    }
    if (!cfg.is_object()) return "not an object";
    if (cfg.value("quant_method", "") != "gptq") return "quant_method is not \"gptq\"";
    if (cfg.contains("checkpoint_format") && cfg["checkpoint_format"] != "gptq")
        return "checkpoint_format is not \"gptq\"";
    if (!cfg.contains("bits") || !allowed_bits(cfg["bits"])) return "bits not in {2,3,4,8}";
    if (!cfg.contains("group_size") || !allowed_group(cfg["group_size"]))
        return "group_size not in {-1,32,64,128}";
    for (const char* k : {"desc_act", "sym", "lm_head"})
        if (!cfg.contains(k) || !cfg[k].is_boolean()) return std::string(k) + " is not a bool";
    const GptqModuleFormat base{cfg["bits"].get<int>(), cfg["group_size"].get<int>(),
                                cfg["sym"].get<bool>()};
    std::vector<Rule> rules;
    if (cfg.contains("dynamic")) {
        if (!cfg["dynamic"].is_object()) return "dynamic is not an object";
        for (const auto& [key, value] : cfg["dynamic"].items()) {
            Rule r;
            r.negative = key.rfind("-:", 0) == 0;
            r.pattern = key.rfind("+:", 0) == 0 || r.negative ? key.substr(2) : key;
            if (r.pattern.size() < 2 || r.pattern.front() != '^' || r.pattern.back() != '$')
                return "pattern '" + key + "' is not anchored ^…$";
            try {
                r.re = std::regex(r.pattern);
            } catch (const std::regex_error&) {
                return "pattern '" + key + "' is not a valid regex";
            }
            if (!value.is_object()) return "dynamic '" + key + "' value is not an object";
            if (r.negative && !value.empty()) return "'-:' rule '" + key + "' carries overrides";
            for (const auto& [k, v] : value.items()) {
                if (k == "bits" && !allowed_bits(v))
                    return "dynamic '" + key + "': bits " + v.dump();
                if (k == "group_size" && !allowed_group(v))
                    return "dynamic '" + key + "': group_size " + v.dump();
                if ((k == "sym" || k == "desc_act") && !v.is_boolean())
                    return "dynamic '" + key + "': " + k + " is not a bool";
                if (k != "bits" && k != "group_size" && k != "sym" && k != "desc_act")
                    return "dynamic '" + key + "': unknown override '" + k + "'";
            }
            r.overrides = value;
            rules.push_back(std::move(r));
        }
    }
    std::vector<std::string> names = modules;
    for (const auto& [f, parts] : fused) names.push_back(f);
    for (const auto& m : names) {
        int hits = 0;
        for (const auto& r : rules) hits += py_match(r, m) ? 1 : 0;
        if (hits > 1) return "module '" + m + "' matches " + std::to_string(hits) + " patterns";
    }
    // Marlin serves the whole model when the base is Marlin's.
    if (marlin(base))
        for (const auto& m : names)
            if (auto f = resolve_gptq_module(cfg, m); f && !marlin(*f))
                return "base is Marlin's (" + std::to_string(base.bits) + "-bit sym) but '" + m +
                       "' is " + std::to_string(f->bits) + "-bit " + (f->sym ? "sym" : "asym");
    if (!cfg["lm_head"].get<bool>())
        for (const auto& m : names)
            if (m == "lm_head" && resolve_gptq_module(cfg, m).has_value())
                return "lm_head is false but 'lm_head' is not excluded";
    for (const auto& [fm, parts] : fused) {
        const auto whole = resolve_gptq_module(cfg, fm);
        for (const auto& p : parts)
            if (resolve_gptq_module(cfg, p) != whole)
                return "fused '" + fm + "' resolves differently from its part '" + p + "'";
    }
    if (expected)
        for (const auto& m : modules) {
            const auto got = resolve_gptq_module(cfg, m);
            auto it = expected->find(m);
            if (it == expected->end() && got) return "module '" + m + "' is not excluded";
            if (it != expected->end() && got != it->second)
                return "module '" + m + "' resolves to another format than planned";
        }
    return "";
}

}  // namespace quantlens::test_support
