#include "server/recipes.h"

#include <fmt/format.h>

#include "core/error.h"
#include "core/ggml_type.h"
#include "core/output_file.h"
#include "server/safe_path.h"

namespace quantlens::server {

namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxTensors = 100000;

bool is_tensor_name(const std::string& s) {
    if (s.empty() || s.size() > 256) return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    return true;
}

std::string yaml_scalar(const nlohmann::json& v) {
    if (v.is_string()) return nlohmann::json(v.get<std::string>()).dump();  // JSON strings are YAML
    return v.dump();
}

}  // namespace

std::string recipe_yaml(const nlohmann::json& recipe) {
    std::string out = "# quantlens recipe\n";
    for (const auto& [k, v] : recipe.items())
        if (k != "tensors" && (v.is_primitive())) out += fmt::format("{}: {}\n", k, yaml_scalar(v));
    out += "tensors:\n";
    for (const auto& [name, type] : recipe.at("tensors").items())
        out += fmt::format("  {}: {}\n", nlohmann::json(name).dump(), type.get<std::string>());
    return out;
}

SavedRecipe save_recipe(const nlohmann::json& body, const fs::path& dir) {
    QL_CHECK(body.is_object(), "request body must be a JSON object");
    QL_CHECK(body.contains("name") && body["name"].is_string(), "'name' (string) is required");
    const std::string name = body["name"];
    QL_CHECK(is_safe_name(name),
             "recipe name '{}' is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
             "starting with a letter or digit",
             name);
    const std::string format = body.value("format", "json");
    QL_CHECK(format == "json" || format == "yaml",
             "'format' must be \"json\" or \"yaml\", got '{}'", format);
    QL_CHECK(body.contains("recipe") && body["recipe"].is_object(),
             "'recipe' (object) is required");
    nlohmann::json recipe = body["recipe"];
    QL_CHECK(
        recipe.contains("tensors") && recipe["tensors"].is_object() && !recipe["tensors"].empty(),
        "recipe.tensors must be a non-empty object of tensor name → type");
    QL_CHECK(recipe["tensors"].size() <= kMaxTensors, "recipe has more than {} tensors",
             kMaxTensors);
    for (auto& [tensor, type] : recipe["tensors"].items()) {
        QL_CHECK(is_tensor_name(tensor), "recipe.tensors: '{}' is not a tensor name", tensor);
        QL_CHECK(type.is_string(), "recipe.tensors['{}']: type must be a string", tensor);
        const auto t = ggml_type_from_name(type.get<std::string>());
        QL_CHECK(t.has_value(), "recipe.tensors['{}']: unknown type '{}'", tensor,
                 type.get<std::string>());
        type = ggml_type_display_name(*t);
    }
    for (const auto& [k, v] : recipe.items())
        QL_CHECK(k == "tensors" || v.is_primitive(), "recipe.{}: expected a number or a string", k);

    std::error_code ec;
    fs::create_directories(dir, ec);
    QL_CHECK(!ec, "{}: cannot create the recipe directory: {}", dir.string(), ec.message());
    const fs::path path = dir / (name + (format == "json" ? ".json" : ".yaml"));
    const bool overwrite = body.value("overwrite", false);
    QL_CHECK(overwrite || !fs::exists(path),
             "recipe '{}' already exists ({}); pass \"overwrite\": true to replace it", name,
             path.string());
    const std::string text = format == "json" ? recipe.dump(2) + "\n" : recipe_yaml(recipe);
    write_output_file(path.string(), text, overwrite_if(overwrite));
    return {path, recipe["tensors"].size()};
}

}  // namespace quantlens::server
