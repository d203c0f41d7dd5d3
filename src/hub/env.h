// Where the Hugging Face Hub and its local cache are, and which token to use, resolved the
// way huggingface_hub resolves them so quantlens shares one cache and one login with it:
//   endpoint : --endpoint, else $HF_ENDPOINT, else https://huggingface.co
//   cache    : --cache-dir, else $HF_HUB_CACHE, else $HF_HOME/hub, else
//              $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub
//   token    : --token, else $HF_TOKEN, else the file $HF_TOKEN_PATH, else $HF_HOME/token
//              (what `huggingface-cli login` writes), else none.
// A token is a secret: it is only ever sent in an `Authorization: Bearer` header, and every
// message that might contain it goes through redact_token().
#pragma once

#include <string>

namespace quantlens::hub {

std::string hub_endpoint(const std::string& explicit_endpoint = "");
std::string hub_cache_dir(const std::string& explicit_dir = "");
std::string hf_home();
// Empty when there is no token anywhere.
std::string resolve_token(const std::string& explicit_token = "");
// `text` with every occurrence of `token` replaced by "hf_***" (no-op for an empty token).
std::string redact_token(std::string text, const std::string& token);

}  // namespace quantlens::hub
