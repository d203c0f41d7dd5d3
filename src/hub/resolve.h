// MODEL arguments: every command that takes a model accepts a path or a Hub repo id.
//   - an existing file or folder: returned as is;
//   - ORG/NAME (or ORG/NAME@REVISION) pulled before: the snapshot folder in the local store
//     (cache.h) that refs/{REVISION or main} points to, or the one GGUF file in it when the
//     snapshot holds GGUF files and no config.json;
//   - anything else: Error that says what was looked for and suggests `quantlens pull`.
#pragma once

#include <string>

namespace quantlens::hub {

// cache_dir: empty = the usual lookup (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub).
std::string resolve_model_path(const std::string& arg, const std::string& cache_dir = "");

}  // namespace quantlens::hub

namespace quantlens {
using hub::resolve_model_path;  // quantlens::resolve_model_path(arg) for other commands
}  // namespace quantlens
