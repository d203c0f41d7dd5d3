#include "formats/recipe.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap_file.h"

namespace quantlens {
namespace {

using json = nlohmann::ordered_json;

GgmlType parse_type(const std::string& name, const std::string& path, const std::string& tensor) {
    auto t = ggml_type_from_name(name);
    QL_CHECK(t.has_value(), "{}: tensor '{}': unknown quantization type '{}'", path, tensor, name);
    return *t;
}

double nominal_bits(GgmlType type) {
    const auto& info = ggml_type_info(type);
    return 8.0 * static_cast<double>(info.bytes_per_block) / static_cast<double>(info.block_size);
}

json to_json(const Recipe& r) {
    json j;
    j["format"] = "quantlens-recipe";
    j["version"] = 1;
    j["model"] = r.model;
    j["model_hash"] = r.model_hash;
    j["job_id"] = r.job_id;
    j["metric"] = r.metric;
    j["budget"] = {{"kind", r.budget_kind}, {"value", r.budget_value}};
    j["predicted"] = {
        {"size_bytes", r.predicted_size_bytes}, {"bpw", r.predicted_bpw}, {"kld", r.predicted_kld}};
    j["default_type"] = ggml_type_display_name(r.default_type);
    json tensors = json::object();
    for (const auto& [name, type] : r.tensors) tensors[name] = ggml_type_display_name(type);
    j["tensors"] = tensors;
    j["notes"] = r.notes;
    return j;
}

Recipe from_json(const json& j, const std::string& path) {
    QL_CHECK(j.is_object(), "{}: a recipe must be an object with a 'tensors' map", path);
    QL_CHECK(j.contains("tensors") && j["tensors"].is_object(),
             "{}: recipe has no 'tensors' map (tensor name → type)", path);
    Recipe r;
    r.model = j.value("model", "");
    r.model_hash = j.value("model_hash", "");
    r.job_id = j.value("job_id", int64_t{0});
    r.metric = j.value("metric", "kld");
    if (j.contains("budget") && j["budget"].is_object()) {
        r.budget_kind = j["budget"].value("kind", "");
        r.budget_value = j["budget"].value("value", 0.0);
    }
    if (j.contains("predicted") && j["predicted"].is_object()) {
        // Unknown predictions are written as null (JSON has no NaN).
        auto number = [&](const char* key, double fallback) {
            const auto& p = j["predicted"];
            return p.contains(key) && p[key].is_number() ? p[key].get<double>() : fallback;
        };
        const double size_bytes = number("size_bytes", 0);
        // Checked before the conversion, which is undefined for NaN and out-of-range values.
        QL_CHECK(size_bytes >= 0 && size_bytes < 1.8e19,
                 "{}: predicted size_bytes {} is not a byte count", path, size_bytes);
        r.predicted_size_bytes = static_cast<uint64_t>(size_bytes);
        r.predicted_bpw = number("bpw", 0);
        r.predicted_kld = number("kld", std::nan(""));
    }
    if (j.contains("default_type"))
        r.default_type = parse_type(j["default_type"].get<std::string>(), path, "default_type");
    for (const auto& [name, value] : j["tensors"].items()) {
        QL_CHECK(value.is_string(), "{}: tensor '{}': type must be a string like \"Q4_K\"", path,
                 name);
        r.tensors[name] = parse_type(value.get<std::string>(), path, name);
    }
    if (j.contains("notes") && j["notes"].is_array())
        for (const auto& n : j["notes"]) r.notes.push_back(n.get<std::string>());
    return r;
}

json yaml_to_json(const YAML::Node& node) {
    switch (node.Type()) {
        case YAML::NodeType::Map: {
            json j = json::object();
            for (const auto& kv : node) j[kv.first.as<std::string>()] = yaml_to_json(kv.second);
            return j;
        }
        case YAML::NodeType::Sequence: {
            json j = json::array();
            for (const auto& item : node) j.push_back(yaml_to_json(item));
            return j;
        }
        case YAML::NodeType::Scalar: {
            const std::string s = node.as<std::string>();
            if (node.Tag() == "!") return s;  // quoted scalar
            char* end = nullptr;
            double d = std::strtod(s.c_str(), &end);
            if (!s.empty() && end && *end == '\0') {
                if (d == std::floor(d) && std::fabs(d) < 9e15 &&
                    s.find_first_of(".eE") == std::string::npos)
                    return static_cast<int64_t>(d);
                return d;
            }
            return s;
        }
        default:
            return nullptr;
    }
}

void emit_yaml(YAML::Emitter& out, const json& j) {
    if (j.is_object()) {
        out << YAML::BeginMap;
        for (const auto& [k, v] : j.items()) {
            out << YAML::Key << k << YAML::Value;
            emit_yaml(out, v);
        }
        out << YAML::EndMap;
    } else if (j.is_array()) {
        out << YAML::BeginSeq;
        for (const auto& v : j) emit_yaml(out, v);
        out << YAML::EndSeq;
    } else if (j.is_string()) {
        out << YAML::DoubleQuoted << j.get<std::string>();
    } else if (j.is_number_integer() || j.is_number_unsigned()) {
        out << j.get<int64_t>();
    } else if (j.is_number_float()) {
        out << YAML::Precision(10) << j.get<double>();
    } else if (j.is_boolean()) {
        out << j.get<bool>();
    } else {
        out << YAML::Null;
    }
}

}  // namespace

GgmlType Recipe::dominant_type() const {
    std::map<GgmlType, int> counts;
    for (const auto& [name, type] : tensors) counts[type]++;
    GgmlType best = default_type;
    int best_count = -1;
    for (const auto& [type, count] : counts) {
        if (count > best_count ||
            (count == best_count && nominal_bits(type) > nominal_bits(best))) {
            best = type;
            best_count = count;
        }
    }
    return best;
}

std::string recipe_to_json(const Recipe& recipe) {
    return to_json(recipe).dump(2) + "\n";
}

std::string recipe_to_yaml(const Recipe& recipe) {
    YAML::Emitter out;
    emit_yaml(out, to_json(recipe));
    return std::string(out.c_str()) + "\n";
}

Recipe parse_recipe(const std::string& text, const std::string& path) {
    const auto first = text.find_first_not_of(" \t\r\n");
    if (first != std::string::npos && text[first] == '{') {
        json j;
        try {
            j = json::parse(text);
        } catch (const json::exception& e) {
            fail("{}: not valid JSON: {}", path, e.what());
        }
        try {
            return from_json(j, path);
        } catch (const json::exception& e) {  // a field of the wrong type
            fail("{}: {}", path, e.what());
        }
    }
    YAML::Node node;
    try {
        node = YAML::Load(text);
    } catch (const YAML::Exception& e) {
        fail("{}: not valid YAML or JSON: {}", path, e.what());
    }
    try {
        const json j = yaml_to_json(node);
        // The JSON parser rejects invalid UTF-8; YAML text must be rejected too, or writing the
        // recipe back out as JSON would throw. dump() checks every string.
        (void)j.dump();
        return from_json(j, path);
    } catch (const json::exception& e) {
        fail("{}: {}", path, e.what());
    } catch (const YAML::Exception& e) {  // e.g. a map used as a key
        fail("{}: {}", path, e.what());
    }
}

Recipe load_recipe(const std::string& path) {
    return parse_recipe(read_text_file(path), path);
}

void save_recipe(const Recipe& recipe, const std::string& path) {
    const std::string ext = std::filesystem::path(path).extension().string();
    const bool yaml = ext == ".yaml" || ext == ".yml";
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        QL_CHECK(out.good(), "{}: cannot write recipe", path);
        out << (yaml ? recipe_to_yaml(recipe) : recipe_to_json(recipe));
        out.flush();
        if (!out.good()) {
            std::filesystem::remove(tmp);
            fail("{}: write failed (disk full?)", path);
        }
    }
    std::filesystem::rename(tmp, path);
}

std::string anchored_pattern(const std::string& tensor_name) {
    std::string out = "^";
    for (char c : tensor_name) {
        if (std::string_view(".^$|()[]{}*+?\\").find(c) != std::string_view::npos) out += '\\';
        out += c;
    }
    return out + "$";
}

std::string llama_cpp_type_name(GgmlType type) {
    std::string s = ggml_type_info(type).name;
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

std::vector<std::string> llama_cpp_tensor_type_args(const Recipe& recipe, GgmlType base) {
    std::vector<std::string> args;
    for (const auto& [name, type] : recipe.tensors) {
        if (type == base) continue;
        args.push_back("--tensor-type");
        args.push_back(anchored_pattern(name) + "=" + llama_cpp_type_name(type));
    }
    return args;
}

std::string llama_cpp_tensor_type_file(const Recipe& recipe, GgmlType base) {
    std::string out;
    for (const auto& [name, type] : recipe.tensors) {
        if (type == base) continue;
        out += anchored_pattern(name) + "=" + llama_cpp_type_name(type) + "\n";
    }
    return out;
}

std::string llama_cpp_quantize_command(const Recipe& recipe, const std::string& input_gguf,
                                       const std::string& output_gguf, const std::string& type_file,
                                       const std::string& imatrix_path) {
    const GgmlType base = recipe.dominant_type();
    std::string cmd = "llama-quantize";
    if (!imatrix_path.empty()) cmd += " --imatrix '" + imatrix_path + "'";
    cmd += " --tensor-type-file '" + type_file + "'";
    // llama-quantize's default rules would otherwise change token_embd/output on their own.
    if (recipe.tensors.count("output.weight"))
        cmd += " --output-tensor-type " + llama_cpp_type_name(recipe.tensors.at("output.weight"));
    if (recipe.tensors.count("token_embd.weight"))
        cmd += " --token-embedding-type " +
               llama_cpp_type_name(recipe.tensors.at("token_embd.weight"));
    cmd += " '" + input_gguf + "' '" + output_gguf + "' " + llama_cpp_type_name(base);
    return cmd;
}

std::string gptq_dynamic_config(const Recipe& recipe,
                                const std::map<std::string, std::string>& hf_names,
                                int group_size) {
    json dynamic = json::object();
    std::map<int, int> bits_count;
    for (const auto& [name, type] : recipe.tensors) {
        auto it = hf_names.find(name);
        if (it == hf_names.end()) continue;
        std::string module = it->second;
        const std::string suffix = ".weight";
        if (module.size() > suffix.size() &&
            module.compare(module.size() - suffix.size(), suffix.size(), suffix) == 0)
            module.resize(module.size() - suffix.size());
        int bits = static_cast<int>(std::lround(nominal_bits(type)));
        if (type == GgmlType::F16 || type == GgmlType::BF16 || type == GgmlType::F32) {
            dynamic["-:" + anchored_pattern(module)] = json::object();  // keep full precision
            continue;
        }
        bits = std::clamp(bits, 2, 8);
        bits_count[bits]++;
        dynamic["+:" + anchored_pattern(module)] = {{"bits", bits}, {"group_size", group_size}};
    }
    int default_bits = 4, best = -1;
    for (const auto& [bits, count] : bits_count)
        if (count > best) best = count, default_bits = bits;
    json cfg = {{"bits", default_bits},
                {"group_size", group_size},
                {"desc_act", false},
                {"sym", true},
                {"dynamic", dynamic}};
    return cfg.dump(2) + "\n";
}

}  // namespace quantlens
