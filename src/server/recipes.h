// POST /api/recipes: a recipe edited in the web app, validated and saved as JSON or YAML
// into the server's recipe directory. Body:
//   { "name": "llama-8m-4.5bpw", "format": "json" | "yaml", "overwrite": false,
//     "recipe": { "tensors": { "blk.0.attn_q.weight": "Q4_K", ... },
//                 "size_bytes", "bpw", "predicted_kld", "model", "model_hash", "job" (optional) } }
// The file holds exactly the recipe object (the format other commands read).
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

namespace quantlens::server {

struct SavedRecipe {
    std::filesystem::path path;
    size_t n_tensors = 0;
};

// Throws Error with a message fit for a 400 reply (bad name, unknown type, bad tensor name,
// existing file without overwrite).
SavedRecipe save_recipe(const nlohmann::json& body, const std::filesystem::path& dir);

// The YAML form: scalar fields first, then `tensors:` with one quoted name per line.
std::string recipe_yaml(const nlohmann::json& recipe);

}  // namespace quantlens::server
