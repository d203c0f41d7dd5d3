// GET /api/models: what is at a path the PathPolicy accepted — a directory listing (models
// flagged: a directory with config.json + *.safetensors, or a .gguf file), or the tensor
// table of a model (name, dtype, shape, bytes) read from safetensors headers or the GGUF
// header only; no weights are read.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>

namespace quantlens::server {

// Throws Error (naming the file) for an unreadable or malformed model file.
nlohmann::json describe_path(const std::filesystem::path& path);

}  // namespace quantlens::server
