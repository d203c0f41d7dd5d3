#include "server/recipes.h"

#include <fmt/format.h>

#include "core/error.h"
#include "core/output_file.h"
#include "formats/recipe.h"
#include "server/safe_path.h"

namespace quantlens::server {

namespace fs = std::filesystem;

SavedRecipe save_recipe(const nlohmann::json& body, const fs::path& dir) {
    QL_CHECK(body.is_object(), "request body must be a JSON object");
    QL_CHECK(body.contains("name") && body["name"].is_string(), "'name' (string) is required");
    const std::string name = body["name"];
    QL_CHECK(is_safe_name(name),
             "recipe name '{}' is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
             "starting with a letter or digit",
             name);
    const auto format_field = body.contains("format") ? body["format"] : nlohmann::json("json");
    QL_CHECK(format_field.is_string() && (format_field.get<std::string>() == "json" ||
                                          format_field.get<std::string>() == "yaml"),
             "'format' must be \"json\" or \"yaml\", got {}", format_field.dump());
    const std::string format = format_field;
    QL_CHECK(!body.contains("overwrite") || body["overwrite"].is_boolean(),
             "'overwrite' must be true or false, got {}",
             body.value("overwrite", nlohmann::json()).dump());
    const bool overwrite = body.contains("overwrite") && body["overwrite"].get<bool>();
    QL_CHECK(body.contains("recipe") && body["recipe"].is_object(),
             "'recipe' (object) is required");
    // One schema: the document is parsed exactly as a recipe file would be.
    const Recipe recipe = parse_recipe(body["recipe"].dump(), "recipe");
    QL_CHECK(!recipe.tensors.empty(),
             "recipe.tensors must be a non-empty object of tensor name → type");

    std::error_code ec;
    fs::create_directories(dir, ec);
    QL_CHECK(!ec, "{}: cannot create the recipe directory: {}", dir.string(), ec.message());
    const fs::path path = dir / (name + (format == "json" ? ".json" : ".yaml"));
    QL_CHECK(overwrite || !fs::exists(path),
             "recipe '{}' already exists ({}); pass \"overwrite\": true to replace it", name,
             path.string());
    quantlens::save_recipe(recipe, path.string(), overwrite_if(overwrite));
    return {path, recipe.tensors.size()};
}

}  // namespace quantlens::server
