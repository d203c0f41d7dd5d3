// GET /api/models: what is at a path the PathPolicy accepted — a directory listing (models
// flagged: a directory with config.json + *.safetensors, or a .gguf file), or the tensor
// table of a model (name, dtype, shape, bytes) read from safetensors headers or the GGUF
// header only; no weights are read. A model also carries `inspect`, the document of
// `quantlens inspect --json` (model/inspect_json.h: config, GGUF names, roles, totals), or
// `inspect_error` saying why the checkpoint cannot be opened as a model.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>

namespace quantlens::server {

// Throws Error (naming the file) for an unreadable or malformed model file.
nlohmann::json describe_path(const std::filesystem::path& path);

}  // namespace quantlens::server
