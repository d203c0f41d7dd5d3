#include "formats/recipe.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/mmap_file.h"
#include "core/table_lookup.h"

namespace quantlens {
namespace {

using json = nlohmann::ordered_json;

GgmlType parse_type(const std::string& name, const std::string& path, const std::string& tensor) {
    auto t = ggml_type_from_name(name);
    QL_CHECK(t.has_value(), "{}: tensor '{}': unknown quantization type '{}'", path, tensor, name);
    return *t;
}

json to_json(const Recipe& r) {
    json j;
    j["format"] = "quantlens-recipe";
    j["version"] = r.rounding.empty() ? 1 : kRecipeVersion;
    j["model"] = r.model;
    j["model_hash"] = r.model_hash;
    j["job_id"] = r.job_id;
    j["metric"] = r.metric;
    j["objective"] = r.objective;
    j["budget"] = {{"kind", r.budget_kind}, {"value", r.budget_value}};
    j["predicted"] = {
        {"size_bytes", r.predicted_size_bytes}, {"bpw", r.predicted_bpw}, {"kld", r.predicted_kld}};
    if (std::isfinite(r.predicted_kld_p99)) j["predicted"]["kld_p99"] = r.predicted_kld_p99;
    if (std::isfinite(r.predicted_kld_p999)) j["predicted"]["kld_p999"] = r.predicted_kld_p999;
    j["default_type"] = ggml_type_display_name(r.default_type);
    json tensors = json::object();
    for (const auto& [name, type] : r.tensors) tensors[name] = ggml_type_display_name(type);
    j["tensors"] = tensors;
    if (!r.rounding.empty()) {
        json rounding = json::object();
        for (const auto& [name, how] : r.rounding) rounding[name] = rounding_name(how);
        j["rounding"] = rounding;
    }
    j["notes"] = r.notes;
    if (r.is_gptq()) {
        json gt = json::object();
        for (const auto& [name, f] : r.gptq_tensors) gt[name] = gptq_format_name(f);
        j["gptq"] = {{"desc_act", r.gptq_desc_act}, {"tensors", gt}};
    }
    return j;
}

// Tensor names reach llama.cpp patterns and file names of exports: GGUF names only.
bool is_tensor_name(const std::string& s) {
    if (s.empty() || s.size() > 256) return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    return true;
}

// One of a recipe's maps tensor name → setting ('tensors', 'rounding', 'gptq.tensors'): at
// most kMaxRecipeTensors entries, each key a tensor name; parse(name, value) reads a value or
// refuses it naming the tensor.
template <typename T, typename Parse>
std::map<std::string, T> tensor_map(const json& section, const std::string& path, const char* key,
                                    Parse parse) {
    QL_CHECK(section.size() <= kMaxRecipeTensors, "{}: more than {} tensors", path,
             kMaxRecipeTensors);
    std::map<std::string, T> out;
    for (const auto& [name, value] : section.items()) {
        QL_CHECK(is_tensor_name(name),
                 "{}: {}: '{}' is not a tensor name (letters, digits, '.', '_', '-'; at most 256)",
                 path, key, name.substr(0, 300));
        out[name] = parse(name, value);
    }
    return out;
}

// Typed field readers: a wrong type is an Error naming the key, never nlohmann's type_error.
std::string string_field(const json& j, const char* key, const std::string& fallback,
                         const std::string& path) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    QL_CHECK(j[key].is_string(), "{}: '{}' must be a string, got {}", path, key, j[key].dump());
    return j[key].get<std::string>();
}

double number_field(const json& j, const char* key, double fallback, const std::string& path,
                    const std::string& where) {
    // Unknown predictions are written as null (JSON has no NaN).
    if (!j.contains(key) || j[key].is_null()) return fallback;
    QL_CHECK(j[key].is_number(), "{}: '{}{}' must be a number, got {}", path, where, key,
             j[key].dump());
    return j[key].get<double>();
}

void check_keys(const json& j, std::initializer_list<std::string_view> known,
                const std::string& path, const std::string& where) {
    for (const auto& [key, value] : j.items()) {
        if (std::find(known.begin(), known.end(), key) != known.end()) continue;
        std::string list;
        for (auto k : known) list += (list.empty() ? "" : ", ") + std::string(k);
        fail("{}: unknown recipe key '{}{}' (expected {}){}", path, where, key, list,
             where.empty() && (key == "job" || key == "size_bytes" || key == "predicted_kld")
                 ? "; a recipe saved by an older `quantlens serve`: rename 'job' to 'job_id' "
                   "and move size_bytes/bpw/predicted_kld into predicted.{size_bytes,bpw,kld}"
                 : "");
    }
}

Recipe from_json(const json& j, const std::string& path) {
    QL_CHECK(j.is_object(), "{}: a recipe must be an object with a 'tensors' map", path);
    QL_CHECK(j.contains("tensors") && j["tensors"].is_object(),
             "{}: recipe has no 'tensors' map (tensor name → type)", path);
    check_keys(j,
               {"format", "version", "model", "model_hash", "job_id", "metric", "objective",
                "budget", "predicted", "default_type", "tensors", "rounding", "notes", "gptq"},
               path, "");
    QL_CHECK(string_field(j, "format", "quantlens-recipe", path) == "quantlens-recipe",
             "{}: 'format' must be \"quantlens-recipe\"", path);
    if (j.contains("version") && !j["version"].is_null()) {
        const auto& v = j["version"];
        QL_CHECK(v.is_number_integer() && v.get<int64_t>() >= 1,
                 "{}: 'version' must be a schema version (1 or 2), got {}", path, v.dump());
        QL_CHECK(v.get<int64_t>() <= kRecipeVersion,
                 "{}: recipe version {} is newer than this quantlens reads (at most {}); update "
                 "quantlens",
                 path, v.get<int64_t>(), kRecipeVersion);
    }
    Recipe r;
    r.model = string_field(j, "model", "", path);
    r.model_hash = string_field(j, "model_hash", "", path);
    if (j.contains("job_id") && !j["job_id"].is_null()) {
        QL_CHECK(j["job_id"].is_number_integer() && j["job_id"].get<int64_t>() >= 0,
                 "{}: 'job_id' must be a job id (a non-negative integer), got {}", path,
                 j["job_id"].dump());
        r.job_id = j["job_id"].get<int64_t>();
    }
    r.metric = string_field(j, "metric", "kld", path);
    r.objective = string_field(j, "objective", "mean", path);
    QL_CHECK(r.objective == "mean" || r.objective == "p99",
             "{}: 'objective' must be \"mean\" or \"p99\", got \"{}\"", path, r.objective);
    if (j.contains("budget") && !j["budget"].is_null()) {
        const auto& b = j["budget"];
        QL_CHECK(b.is_object(), "{}: 'budget' must be an object {{kind, value}}", path);
        check_keys(b, {"kind", "value"}, path, "budget.");
        r.budget_kind = string_field(b, "kind", "", path);
        r.budget_value = number_field(b, "value", 0.0, path, "budget.");
    }
    if (j.contains("predicted") && !j["predicted"].is_null()) {
        const auto& p = j["predicted"];
        QL_CHECK(p.is_object(), "{}: 'predicted' must be an object {{size_bytes, bpw, kld}}", path);
        check_keys(p, {"size_bytes", "bpw", "kld", "kld_p99", "kld_p999"}, path, "predicted.");
        const double size = number_field(p, "size_bytes", 0, path, "predicted.");
        QL_CHECK(size >= 0 && size < 1e18, "{}: 'predicted.size_bytes' {} is out of range", path,
                 size);
        r.predicted_size_bytes = static_cast<uint64_t>(size);
        r.predicted_bpw = number_field(p, "bpw", 0, path, "predicted.");
        r.predicted_kld = number_field(p, "kld", std::nan(""), path, "predicted.");
        r.predicted_kld_p99 = number_field(p, "kld_p99", std::nan(""), path, "predicted.");
        r.predicted_kld_p999 = number_field(p, "kld_p999", std::nan(""), path, "predicted.");
    }
    if (j.contains("default_type"))
        r.default_type =
            parse_type(string_field(j, "default_type", "", path), path, "default_type");
    r.tensors = tensor_map<GgmlType>(
        j["tensors"], path, "tensors", [&](const auto& name, const json& value) {
            QL_CHECK(value.is_string(), "{}: tensor '{}': type must be a string like \"Q4_K\"",
                     path, name);
            return parse_type(value.get<std::string>(), path, name);
        });
    if (j.contains("rounding") && !j["rounding"].is_null()) {
        QL_CHECK(j["rounding"].is_object(),
                 "{}: 'rounding' must be a map tensor name → plain, imatrix or gptq", path);
        r.rounding = tensor_map<Rounding>(
            j["rounding"], path, "rounding", [&](const auto& name, const json& value) {
                const auto how =
                    value.is_string() ? rounding_from_name(value.get<std::string>()) : std::nullopt;
                QL_CHECK(how.has_value(),
                         "{}: tensor '{}': unknown rounding {} (expected \"plain\", \"imatrix\" or "
                         "\"gptq\")",
                         path, name, value.dump());
                return *how;
            });
    }
    if (j.contains("gptq") && !j["gptq"].is_null()) {
        const auto& g = j["gptq"];
        QL_CHECK(g.is_object() && g.contains("tensors") && g["tensors"].is_object(),
                 "{}: 'gptq' must be an object {{desc_act, tensors}}", path);
        check_keys(g, {"desc_act", "tensors"}, path, "gptq.");
        if (g.contains("desc_act")) {
            // YAML scalars arrive as text: "true"/"false" are the boolean.
            const auto& d = g["desc_act"];
            QL_CHECK(d.is_boolean() || d == "true" || d == "false",
                     "{}: 'gptq.desc_act' must be true or false", path);
            r.gptq_desc_act = d.is_boolean() ? d.get<bool>() : d == "true";
        }
        r.gptq_tensors = tensor_map<GptqFormat>(
            g["tensors"], path, "gptq.tensors", [&](const auto& name, const json& value) {
                const auto f = value.is_string() ? gptq_format_from_name(value.get<std::string>())
                                                 : std::nullopt;
                QL_CHECK(f.has_value(),
                         "{}: gptq tensor '{}': {} is not a GPTQ format (gptq4g128, gptq8pc, ...: "
                         "bits 2/3/4/8, groups 32/64/128 or pc)",
                         path, name, value.dump());
                return *f;
            });
        QL_CHECK(r.tensors.empty() || r.gptq_tensors.empty(),
                 "{}: a recipe has ggml 'tensors' or GPTQ 'gptq.tensors', not both", path);
        QL_CHECK(r.rounding.empty() || r.gptq_tensors.empty(),
                 "{}: 'rounding' belongs to ggml 'tensors'; a GPTQ recipe's formats carry their "
                 "own rounding",
                 path);
    }
    if (j.contains("notes") && !j["notes"].is_null()) {
        QL_CHECK(j["notes"].is_array(), "{}: 'notes' must be a list of strings", path);
        for (const auto& n : j["notes"]) {
            QL_CHECK(n.is_string(), "{}: 'notes' must be a list of strings, got {}", path,
                     n.dump());
            r.notes.push_back(n.get<std::string>());
        }
    }
    return r;
}

// Counts what the text asks for before any node is expanded: yaml-cpp loads an alias as a
// shared node, and it is the conversion below that copies it, so nested aliases ("billion
// laughs") would otherwise grow exponentially there.
class YamlLimits : public YAML::EventHandler {
  public:
    explicit YamlLimits(std::string path) : path_(std::move(path)) {}
    void OnDocumentStart(const YAML::Mark&) override {}
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override { node(); }
    void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override {
        node();
        QL_CHECK(++aliases_ <= kMaxRecipeYamlAliases,
                 "{}: line {}: more than {} YAML aliases (*name); a recipe needs none", path_,
                 mark.line + 1, kMaxRecipeYamlAliases);
    }
    void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  const std::string&) override {
        node();
    }
    void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {
        open(mark);
    }
    void OnSequenceEnd() override { --depth_; }
    void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                    YAML::EmitterStyle::value) override {
        open(mark);
    }
    void OnMapEnd() override { --depth_; }

  private:
    void node() {
        QL_CHECK(++nodes_ <= kMaxRecipeNodes, "{}: more than {} YAML nodes", path_,
                 kMaxRecipeNodes);
    }
    void open(const YAML::Mark& mark) {
        node();
        QL_CHECK(++depth_ <= kMaxRecipeDepth, "{}: line {}: YAML nested deeper than {} levels",
                 path_, mark.line + 1, kMaxRecipeDepth);
    }
    std::string path_;
    size_t aliases_ = 0, nodes_ = 0;
    int depth_ = 0;
};

// `budget` counts the nodes still allowed after expanding aliases (each use of an alias
// copies its node again), so no input converts into more than kMaxRecipeNodes values.
// `depth` bounds the expansion too: an alias inside its own anchor (&c [*c]) is a cycle that
// would otherwise recurse until the stack overflows.
json yaml_to_json(const YAML::Node& node, size_t& budget, const std::string& path, int depth = 0) {
    QL_CHECK(budget > 0, "{}: YAML expands to more than {} nodes (aliases?)", path,
             kMaxRecipeNodes);
    QL_CHECK(depth <= kMaxRecipeDepth,
             "{}: YAML nests deeper than {} levels once aliases are expanded (an alias inside "
             "its own anchor?)",
             path, kMaxRecipeDepth);
    --budget;
    switch (node.Type()) {
        case YAML::NodeType::Map: {
            json j = json::object();
            for (const auto& kv : node) {
                QL_CHECK(kv.first.IsScalar(), "{}: line {}: a recipe's keys must be plain text",
                         path, kv.first.Mark().line + 1);
                j[kv.first.as<std::string>()] = yaml_to_json(kv.second, budget, path, depth + 1);
            }
            return j;
        }
        case YAML::NodeType::Sequence: {
            json j = json::array();
            for (const auto& item : node) j.push_back(yaml_to_json(item, budget, path, depth + 1));
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
    } else if (j.is_number_float() && !std::isfinite(j.get<double>())) {
        out << YAML::Null;  // as in JSON: an unknown prediction reads back as null, not ".nan"
    } else if (j.is_number_float()) {
        out << YAML::Precision(10) << j.get<double>();
    } else if (j.is_boolean()) {
        out << j.get<bool>();
    } else {
        out << YAML::Null;
    }
}

// The roundings' names in recipes and item names, read both ways.
struct RoundingName {
    Rounding rounding;
    const char* name;
};
constexpr RoundingName kRoundingNames[] = {
    {Rounding::plain, "plain"}, {Rounding::imatrix, "imatrix"}, {Rounding::gptq, "gptq"}};

}  // namespace

const char* rounding_name(Rounding rounding) {
    const RoundingName* r = find_entry(kRoundingNames, &RoundingName::rounding, rounding);
    return r ? r->name : "?";
}

std::optional<Rounding> rounding_from_name(std::string_view name) {
    if (const RoundingName* r = find_entry(kRoundingNames, &RoundingName::name, name))
        return r->rounding;
    return std::nullopt;
}

GgmlType Recipe::dominant_type() const {
    std::vector<GgmlType> types;
    types.reserve(tensors.size());
    for (const auto& [name, type] : tensors) types.push_back(type);
    return ggml_dominant_type(types, default_type);
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
    QL_CHECK(text.size() <= kMaxRecipeBytes, "{}: {} bytes; a recipe is at most {} bytes", path,
             text.size(), kMaxRecipeBytes);
    const auto first = text.find_first_not_of(" \t\r\n");
    if (first != std::string::npos && text[first] == '{') {
        json j;
        try {
            j = json::parse(text, [&](int depth, json::parse_event_t, json&) {
                QL_CHECK(depth <= kMaxRecipeDepth, "{}: JSON nested deeper than {} levels", path,
                         kMaxRecipeDepth);
                return true;
            });
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
        YamlLimits limits(path);
        std::istringstream in(text);
        YAML::Parser parser(in);
        while (parser.HandleNextDocument(limits)) {
        }
        node = YAML::Load(text);
    } catch (const YAML::Exception& e) {
        fail("{}: not valid YAML or JSON: {}", path, e.what());
    }
    size_t budget = kMaxRecipeNodes;
    try {
        const json j = yaml_to_json(node, budget, path);
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
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    // A FIFO or device would block or never end; refuse before opening it.
    QL_CHECK(ec || status.type() == std::filesystem::file_type::regular,
             "{}: not a regular file (a recipe is a .json or .yaml file)", path);
    QL_CHECK(ec || std::filesystem::file_size(path, ec) <= kMaxRecipeBytes,
             "{}: larger than {} bytes; a recipe is at most that", path, kMaxRecipeBytes);
    return parse_recipe(read_text_file(path), path);
}

void save_recipe(const Recipe& recipe, const std::string& path, Overwrite overwrite) {
    const std::string ext = std::filesystem::path(path).extension().string();
    const bool yaml = ext == ".yaml" || ext == ".yml";
    write_output_file(path, yaml ? recipe_to_yaml(recipe) : recipe_to_json(recipe), overwrite);
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

}  // namespace quantlens
