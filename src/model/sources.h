// The two Model implementations, opened by Model::open (internal to src/model).
#pragma once

#include <memory>
#include <string>

#include "model/model.h"

namespace quantlens::detail {

std::unique_ptr<Model> open_hf_model(const std::string& dir);
std::unique_ptr<Model> open_gguf_model(const std::string& path);

// Throws Error naming `file` and the tensor when `ne` disagrees with the shape the config
// implies for its role (trailing dimensions of 1 are ignored). `config_source` names
// where the config came from ("config.json", "GGUF metadata").
void check_shape(const TensorInfo& t, const ModelConfig& config, const std::string& file,
                 const char* config_source);

}  // namespace quantlens::detail
