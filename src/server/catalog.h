// What the web app's forms offer, taken from the library's own tables so the app holds no
// copy of them:
//   GET /api/types   {"types": [{"name", "bpw", "default", "needs_imatrix"}, ...] (every type
//                    our quantizers implement, by bits per weight ascending; "default" = in
//                    the sweep's default list), "presets": [{"name", "needs_imatrix"}],
//                    "gpu": whether this build can run `sweep --gpu`}
//   GET /api/presets?model=P&presets=Q8_0,Q4_K_M
//                    {"presets": {"Q4_K_M": {tensor: type, ...}, ...}}: the type llama.cpp's
//                    preset gives each tensor of that model (analysis/write/presets.h)
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

namespace quantlens::server {

nlohmann::json types_json();
// Throws Error for an unknown preset name or a model that cannot be opened.
nlohmann::json presets_json(const std::filesystem::path& model, const std::string& presets);

}  // namespace quantlens::server
