#include "hub/repo.h"

#include <fnmatch.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace quantlens::hub {
namespace {

bool is_hex(const std::string& s, size_t n) {
    return s.size() == n && std::all_of(s.begin(), s.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
}

bool legal_name(const std::string& s) {
    if (s.empty() || s.size() > 96 || s == "." || s == "..") return false;
    if (s.front() == '-' || s.front() == '.' || s.back() == '-' || s.back() == '.') return false;
    if (s.find("--") != std::string::npos || s.find("..") != std::string::npos) return false;
    return std::all_of(s.begin(), s.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '-' || c == '_' || c == '.';
    });
}

// The server's own explanation, if it gave one (X-Error-Message or {"error": "..."}).
std::string server_message(const HttpResponse& r) {
    std::string msg = r.header("x-error-message");
    if (msg.empty() && !r.body.empty()) {
        auto j = nlohmann::json::parse(r.body, nullptr, false);
        if (j.is_object() && j.contains("error") && j["error"].is_string())
            msg = j["error"].get<std::string>();
    }
    if (msg.size() > 200) msg = msg.substr(0, 200) + "...";
    return msg.empty() ? "" : ": " + msg;
}

// A repo path from the listing becomes a path under the snapshot folder: refuse anything
// that could step outside it.
bool safe_relative_path(const std::string& p) {
    if (p.empty() || p.front() == '/' || p.find('\\') != std::string::npos) return false;
    size_t start = 0;
    while (start <= p.size()) {
        size_t end = p.find('/', start);
        if (end == std::string::npos) end = p.size();
        const std::string part = p.substr(start, end - start);
        if (part.empty() || part == "." || part == "..") return false;
        start = end + 1;
    }
    return true;
}

}  // namespace

void check_repo_id(const std::string& repo_id) {
    const size_t slash = repo_id.find('/');
    const bool ok = slash == std::string::npos ? legal_name(repo_id)
                                               : legal_name(repo_id.substr(0, slash)) &&
                                                     legal_name(repo_id.substr(slash + 1));
    QL_CHECK(ok,
             "'{}' is not a Hugging Face repo id: expected ORG/NAME, e.g. "
             "meta-llama/Llama-3.1-8B (letters, digits, '-', '_', '.')",
             repo_id);
}

std::string repo_folder_name(const std::string& repo_id) {
    std::string out = "models--";
    for (char c : repo_id) {
        if (c == '/')
            out += "--";
        else
            out += c;
    }
    return out;
}

std::string url_escape(const std::string& s, bool keep_slashes) {
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
            (keep_slashes && c == '/')) {
            out += static_cast<char>(c);
        } else {
            out += fmt::format("%{:02X}", c);
        }
    }
    return out;
}

std::string file_url(const std::string& endpoint, const std::string& repo_id,
                     const std::string& commit, const std::string& path) {
    return fmt::format("{}/{}/resolve/{}/{}", endpoint, repo_id, url_escape(commit, false),
                       url_escape(path, true));
}

void throw_http_error(const HttpResponse& r, const std::string& endpoint,
                      const std::string& repo_id, const std::string& revision,
                      const std::string& what, bool have_token, int retries) {
    const std::string page = endpoint + "/" + repo_id;
    if (r.transport_failed()) {
        fail(
            "{}: network error while fetching {}: {} (after {} retries). Check the connection "
            "or the proxy (https_proxy); run the same command again to resume",
            repo_id, what, r.curl_error, retries);
    }
    const std::string code = r.header("x-error-code");
    switch (r.status) {
        case 401:
            if (have_token) {
                fail(
                    "{}: the Hub rejected the token (HTTP 401{}). The token may be invalid, "
                    "expired, or lack read access to this gated or private repository: accept "
                    "the license on {} and pass a valid token (--token, HF_TOKEN or "
                    "`huggingface-cli login`)",
                    repo_id, server_message(r), page);
            }
            fail(
                "{}: authentication required (HTTP 401{}). The repository is gated or private "
                "(or does not exist): accept its license on {} while logged in, then pass a "
                "token with --token, HF_TOKEN or `huggingface-cli login`",
                repo_id, server_message(r), page);
        case 403:
            fail(
                "{}: access denied (HTTP 403{}). The repository is gated and the token's account "
                "has not been granted access: accept the license on {} (and wait for approval "
                "if the authors review requests), then pass a token with read access via "
                "--token, HF_TOKEN or `huggingface-cli login`",
                repo_id, server_message(r), page);
        case 404:
            if (code == "RevisionNotFound") {
                fail(
                    "{}: revision '{}' not found (HTTP 404{}); check --revision (a branch, tag "
                    "or commit of {})",
                    repo_id, revision, server_message(r), page);
            }
            if (code == "EntryNotFound") {
                fail("{}: file '{}' not found at revision '{}' (HTTP 404{})", repo_id, what,
                     revision, server_message(r));
            }
            fail(
                "{}: repository or revision '{}' not found on {} (HTTP 404{}); check the "
                "spelling of ORG/NAME (it is case-sensitive) and --revision",
                repo_id, revision, endpoint, server_message(r));
        case 429:
            fail(
                "{}: rate limited by the Hub (HTTP 429{}) while fetching {}, still after {} "
                "retries with back-off; wait a few minutes and run the same command again "
                "(finished files are kept, partial ones resume)",
                repo_id, server_message(r), what, retries);
        default:
            fail("{}: HTTP {}{} while fetching {}{}", repo_id, r.status, server_message(r), what,
                 r.status >= 500 ? fmt::format(" (after {} retries); the Hub may be having "
                                               "trouble, try again later",
                                               retries)
                                 : "");
    }
}

namespace {

// GET with retries per `policy`; the documented error when the answer stays bad.
HttpResponse get_ok(HttpClient& http, const std::string& url, const std::string& endpoint,
                    const std::string& repo_id, const std::string& revision, bool have_token,
                    const RetryPolicy& policy) {
    for (int attempt = 0;; ++attempt) {
        HttpResponse r = http.get(url);
        if (!r.transport_failed() && r.status == 200) return r;
        const double wait = retry_delay(r, attempt, policy);
        if (wait < 0)
            throw_http_error(r, endpoint, repo_id, revision, "the file list", have_token, attempt);
        std::this_thread::sleep_for(std::chrono::duration<double>(wait));
    }
}

// One file of a listing: a revision sibling {rfilename, size, blobId, lfs: {sha256, size}} or
// a tree entry {path, size, oid, lfs: {oid, size}}.
RepoFile parse_entry(const nlohmann::json& e, const char* path_key, const char* id_key) {
    RepoFile f;
    f.path = e.value(path_key, "");
    if (e.contains("size") && e["size"].is_number_integer()) f.size = e["size"].get<int64_t>();
    f.blob_id = e.value(id_key, "");
    if (e.contains("lfs") && e["lfs"].is_object()) {
        const auto& lfs = e["lfs"];
        f.sha256 = lfs.value("sha256", lfs.value("oid", ""));
        if (lfs.contains("size") && lfs["size"].is_number_integer())
            f.size = lfs["size"].get<int64_t>();
    }
    return f;
}

// `<URL>; rel="next"` from a Link header, or "".
std::string next_link(const std::string& link) {
    const size_t rel = link.find("rel=\"next\"");
    if (rel == std::string::npos) return "";
    const size_t open = link.rfind('<', rel), close = link.rfind('>', rel);
    if (open == std::string::npos || close == std::string::npos || close < open) return "";
    return link.substr(open + 1, close - open - 1);
}

}  // namespace

RepoInfo fetch_repo_info(HttpClient& http, const std::string& endpoint, const std::string& repo_id,
                         const std::string& revision, bool have_token, const RetryPolicy& policy) {
    const std::string url = fmt::format("{}/api/models/{}/revision/{}?blobs=true", endpoint,
                                        repo_id, url_escape(revision, false));
    const HttpResponse r = get_ok(http, url, endpoint, repo_id, revision, have_token, policy);
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    QL_CHECK(j.is_object() && j.contains("siblings") && j["siblings"].is_array(),
             "{}: unexpected answer from {}: expected a JSON object with 'siblings'", repo_id, url);
    RepoInfo info;
    info.repo_id = repo_id;
    info.commit = j.value("sha", "");
    QL_CHECK(is_hex(info.commit, 40),
             "{}: the Hub's answer for revision '{}' has no commit hash ('sha'): expected 40 hex "
             "digits, found '{}'",
             repo_id, revision, info.commit);
    bool complete = true;
    for (const auto& s : j["siblings"]) {
        info.files.push_back(parse_entry(s, "rfilename", "blobId"));
        complete = complete && info.files.back().size >= 0 && !info.files.back().blob_id.empty();
    }
    if (!complete) {
        // An endpoint that ignores ?blobs=true (some mirrors): sizes and ids come from the
        // tree listing of the same commit, which is paginated through Link headers.
        std::vector<RepoFile> tree;
        std::string page =
            fmt::format("{}/api/models/{}/tree/{}?recursive=true", endpoint, repo_id, info.commit);
        while (!page.empty()) {
            const HttpResponse t =
                get_ok(http, page, endpoint, repo_id, revision, have_token, policy);
            auto entries = nlohmann::json::parse(t.body, nullptr, false);
            QL_CHECK(entries.is_array(), "{}: unexpected answer from {}: expected a JSON array",
                     repo_id, page);
            for (const auto& e : entries)
                if (e.value("type", "") == "file") tree.push_back(parse_entry(e, "path", "oid"));
            page = next_link(t.header("link"));
        }
        info.files = std::move(tree);
    }
    for (const auto& f : info.files) {
        QL_CHECK(safe_relative_path(f.path), "{}: the file list names an unsafe path '{}'", repo_id,
                 f.path);
        if (!f.sha256.empty()) {
            QL_CHECK(is_hex(f.sha256, 64), "{}: file '{}': LFS sha256 '{}' is not 64 hex digits",
                     repo_id, f.path, f.sha256);
        } else {
            QL_CHECK(is_hex(f.blob_id, 40),
                     "{}: file '{}': git blob id '{}' is not 40 hex digits (is the endpoint a "
                     "Hugging Face Hub?)",
                     repo_id, f.path, f.blob_id);
        }
    }
    return info;
}

std::vector<RepoFile> select_files(const RepoInfo& info, const std::vector<std::string>& globs) {
    static const std::vector<std::string> kModelFiles = {"config.json",
                                                         "generation_config.json",
                                                         "tokenizer.json",
                                                         "tokenizer_config.json",
                                                         "special_tokens_map.json",
                                                         "tokenizer.model",
                                                         "model.safetensors.index.json"};
    std::vector<RepoFile> out;
    for (const auto& f : info.files) {
        const size_t slash = f.path.rfind('/');
        const std::string base = slash == std::string::npos ? f.path : f.path.substr(slash + 1);
        bool take = false;
        if (globs.empty()) {
            const bool root = slash == std::string::npos;
            const bool safetensors =
                base.size() > 12 && base.compare(base.size() - 12, 12, ".safetensors") == 0;
            take = root && (safetensors || std::find(kModelFiles.begin(), kModelFiles.end(),
                                                     base) != kModelFiles.end());
        } else {
            for (const auto& g : globs) {
                if (fnmatch(g.c_str(), f.path.c_str(), 0) == 0 ||
                    fnmatch(g.c_str(), base.c_str(), 0) == 0)
                    take = true;
            }
        }
        if (take) out.push_back(f);
    }
    if (globs.empty()) {
        // Mistral-style repos ship the weights twice: consolidated*.safetensors (their own
        // format) next to the transformers shards. Keep the shards when both are there.
        auto consolidated = [](const RepoFile& f) {
            return f.path.rfind("consolidated", 0) == 0 &&
                   f.path.find(".safetensors") != std::string::npos;
        };
        const bool has_shards = std::any_of(out.begin(), out.end(), [&](const RepoFile& f) {
            return !consolidated(f) && f.path.find(".safetensors") != std::string::npos &&
                   f.path != "model.safetensors.index.json";
        });
        if (has_shards) std::erase_if(out, consolidated);
    }
    const bool has_weights = std::any_of(out.begin(), out.end(), [](const RepoFile& f) {
        return f.path.find(".safetensors") != std::string::npos;
    });
    if (out.empty() || (globs.empty() && !has_weights)) {
        std::vector<std::string> names;
        for (const auto& f : info.files) {
            if (names.size() == 12) {
                names.push_back(fmt::format("... ({} files)", info.files.size()));
                break;
            }
            names.push_back(f.path);
        }
        if (globs.empty()) {
            fail(
                "{}: no safetensors weights in the repository; for GGUF repositories choose a "
                "file with --include (e.g. --include '*Q4_K_M.gguf'). Files: {}",
                info.repo_id, fmt::join(names, ", "));
        }
        fail("{}: no file matches --include {}; files: {}", info.repo_id, fmt::join(globs, " "),
             fmt::join(names, ", "));
    }
    return out;
}

}  // namespace quantlens::hub
