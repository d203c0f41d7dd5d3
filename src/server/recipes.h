// POST /api/recipes: a recipe edited in the web app, validated and saved as JSON or YAML
// into the server's recipe directory. Body:
//   { "name": "llama-8m-4.5bpw", "format": "json" | "yaml", "overwrite": false,
//     "recipe": { ...the recipe document of formats/recipe.h: "tensors", "model",
//                 "model_hash", "job_id", "metric", "budget", "predicted", ... } }
// The recipe is read and written only through formats/recipe (a typed Recipe), so the file
// is exactly what quantize, verify and plan read, provenance included.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

namespace quantlens::server {

struct SavedRecipe {
    std::filesystem::path path;
    size_t n_tensors = 0;
};

// Throws Error with a message fit for a 400 reply (bad name, unknown type or key, bad tensor
// name, existing file without overwrite).
SavedRecipe save_recipe(const nlohmann::json& body, const std::filesystem::path& dir);

}  // namespace quantlens::server
