#include "hub/env.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace quantlens::hub {
namespace {

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? std::string(v) : std::string();
}

std::string trim(const std::string& s) {
    const char* ws = " \t\r\n";
    const size_t b = s.find_first_not_of(ws);
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

std::string strip_trailing_slashes(std::string s) {
    while (s.size() > 1 && s.back() == '/') s.pop_back();
    return s;
}

}  // namespace

std::string hub_endpoint(const std::string& explicit_endpoint) {
    if (!explicit_endpoint.empty()) return strip_trailing_slashes(explicit_endpoint);
    const std::string e = env("HF_ENDPOINT");
    return e.empty() ? "https://huggingface.co" : strip_trailing_slashes(e);
}

std::string hf_home() {
    if (std::string h = env("HF_HOME"); !h.empty()) return h;
    if (std::string x = env("XDG_CACHE_HOME"); !x.empty()) return x + "/huggingface";
    return env("HOME") + "/.cache/huggingface";
}

std::string hub_cache_dir(const std::string& explicit_dir) {
    if (!explicit_dir.empty()) return explicit_dir;
    if (std::string c = env("HF_HUB_CACHE"); !c.empty()) return c;
    return hf_home() + "/hub";
}

std::string resolve_token(const std::string& explicit_token) {
    if (!explicit_token.empty()) return trim(explicit_token);
    if (std::string t = trim(env("HF_TOKEN")); !t.empty()) return t;
    std::string path = env("HF_TOKEN_PATH");
    if (path.empty()) path = hf_home() + "/token";
    std::ifstream in(path);
    if (!in) return "";
    std::stringstream ss;
    ss << in.rdbuf();
    return trim(ss.str());
}

std::string redact_token(std::string text, const std::string& token) {
    if (token.empty()) return text;
    for (size_t pos = text.find(token); pos != std::string::npos; pos = text.find(token, pos)) {
        text.replace(pos, token.size(), "hf_***");
        pos += 6;
    }
    return text;
}

}  // namespace quantlens::hub
