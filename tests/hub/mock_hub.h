// A mock Hugging Face Hub for tests, on 127.0.0.1 with an ephemeral port (cpp-httplib).
// It serves one repository the way huggingface.co does:
//   GET /api/models/ORG/NAME/revision/REV[?blobs=true]  the listing (siblings, sha, lfs)
//   GET /ORG/NAME/resolve/REV/PATH   small files directly, LFS files by a 302 to /cdn/SHA256,
//                                    with X-Repo-Commit, ETag, X-Linked-Etag, X-Linked-Size
//   GET /cdn/SHA256                  the LFS content, with Range support
// and faults on demand: a status for the next N requests (with Retry-After), a connection
// cut after K bytes of one file, a corrupted byte in one file, a required token (401 without
// one, 403 with a wrong one; on file requests, as the real Hub gates files, not listings).
// It counts the body bytes it served and records the Authorization and Range headers it saw. The
// checksums it advertises are computed here with libcrypto directly, independently of
// src/hub/checksum.
#pragma once

#include <httplib.h>
#include <openssl/evp.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace quantlens::hub::testing {

inline std::string hex_digest(const EVP_MD* md, const std::string& prefix, const std::string& s) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, md, nullptr);
    EVP_DigestUpdate(ctx, prefix.data(), prefix.size());
    EVP_DigestUpdate(ctx, s.data(), s.size());
    EVP_DigestFinal_ex(ctx, out, &len);
    EVP_MD_CTX_free(ctx);
    std::string hex;
    for (unsigned i = 0; i < len; ++i) {
        static const char* d = "0123456789abcdef";
        hex += d[out[i] >> 4];
        hex += d[out[i] & 15];
    }
    return hex;
}

inline std::string read_whole(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

class MockHub {
  public:
    struct File {
        std::string path, content, sha256, blob_id;
        bool lfs = false;
    };
    struct Faults {
        int status = 0;              // answer with this status ...
        int status_count = -1;       // ... this many times (-1: always)
        std::string retry_after;     // Retry-After header of those answers
        bool files_only = false;     // only file requests get the status, not the listing
        std::string abort_path;      // cut the connection after abort_after body bytes ...
        int64_t abort_after = -1;    // ... of this file, once
        std::string corrupt_path;    // flip one byte of this file ...
        int corrupt_times = 0;       // ... in this many answers
        std::string required_token;  // gated repo: 401 without a token, 403 with another
    };

    // Set before start(): answer listings as an endpoint that ignores ?blobs=true, so the
    // client needs the tree listing, served `tree_page_size` entries a page.
    bool ignore_blobs_param = false;
    int tree_page_size = 2;

    static constexpr const char* kCommit = "4f1d2c3b4a5968778695a4b3c2d1e0f1a2b3c4d5";

    explicit MockHub(std::string repo_id) : repo_id_(std::move(repo_id)) {}
    ~MockHub() {
        server_.stop();
        if (thread_.joinable()) thread_.join();
    }

    void add_file(const std::string& path, std::string content, bool lfs) {
        File f;
        f.path = path;
        f.sha256 = hex_digest(EVP_sha256(), "", content);
        f.blob_id =
            hex_digest(EVP_sha1(), "blob " + std::to_string(content.size()) + '\0', content);
        f.lfs = lfs;
        f.content = std::move(content);
        files_.push_back(std::move(f));
    }

    void start() {
        server_.Get(R"(/api/models/([^/]+/[^/]+)/revision/(.+))",
                    [this](const httplib::Request& q, httplib::Response& r) { api(q, r); });
        server_.Get(R"(/api/models/([^/]+/[^/]+)/tree/([^/]+))",
                    [this](const httplib::Request& q, httplib::Response& r) { tree(q, r); });
        server_.Get(R"(/([^/]+/[^/]+)/resolve/([^/]+)/(.+))",
                    [this](const httplib::Request& q, httplib::Response& r) { resolve(q, r); });
        server_.Get(R"(/cdn/([0-9a-f]{64}))",
                    [this](const httplib::Request& q, httplib::Response& r) { cdn(q, r); });
        port_ = server_.bind_to_any_port("127.0.0.1");
        thread_ = std::thread([this] { server_.listen_after_bind(); });
        while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }

    std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
    const std::vector<File>& files() const { return files_; }
    const File& file(const std::string& path) const {
        for (const auto& f : files_)
            if (f.path == path) return f;
        throw std::runtime_error("mock hub: no file " + path);
    }

    void set_faults(Faults f) {
        std::lock_guard lock(mu_);
        faults_ = std::move(f);
    }
    std::vector<std::string> authorization_headers() {
        std::lock_guard lock(mu_);
        return auth_seen_;
    }
    std::vector<std::string> range_headers() {
        std::lock_guard lock(mu_);
        return ranges_seen_;
    }
    void reset_counters() {
        std::lock_guard lock(mu_);
        bytes_served = 0;
        api_requests = 0;
        file_requests = 0;
        auth_seen_.clear();
        ranges_seen_.clear();
    }

    std::atomic<int64_t> bytes_served{0};  // file body bytes written to sockets
    std::atomic<int> api_requests{0}, file_requests{0};

  private:
    // Common gate for every request: records headers, applies status and token faults.
    bool refused(const httplib::Request& q, httplib::Response& r, bool is_file) {
        std::lock_guard lock(mu_);
        const std::string auth = q.get_header_value("Authorization");
        auth_seen_.push_back(auth);
        if (q.has_header("Range")) ranges_seen_.push_back(q.get_header_value("Range"));
        if (faults_.status != 0 && faults_.status_count != 0 && (is_file || !faults_.files_only)) {
            if (faults_.status_count > 0) --faults_.status_count;
            r.status = faults_.status;
            if (!faults_.retry_after.empty()) r.set_header("Retry-After", faults_.retry_after);
            r.set_content(R"({"error":"mock fault"})", "application/json");
            return true;
        }
        // Like huggingface.co, a gated repo's listing is public and its files are not (the
        // CDN URLs the Hub redirects to are pre-signed).
        const bool needs_auth = is_file && q.path.rfind("/cdn/", 0) != 0;
        if (needs_auth && !faults_.required_token.empty() &&
            auth != "Bearer " + faults_.required_token) {
            r.status = auth.empty() ? 401 : 403;
            r.set_header("X-Error-Code", "GatedRepo");
            r.set_content(R"({"error":"Access to this model is restricted."})", "application/json");
            return true;
        }
        return false;
    }

    bool not_found(const httplib::Request& q, httplib::Response& r) {
        if (q.matches[1] != repo_id_) {
            r.status = 404;
            r.set_header("X-Error-Code", "RepoNotFound");
            r.set_content(R"({"error":"Repository not found"})", "application/json");
            return true;
        }
        const std::string rev = q.matches[2];
        if (rev != "main" && rev != kCommit) {
            r.status = 404;
            r.set_header("X-Error-Code", "RevisionNotFound");
            r.set_content(R"({"error":"Invalid rev id"})", "application/json");
            return true;
        }
        return false;
    }

    void api(const httplib::Request& q, httplib::Response& r) {
        ++api_requests;
        if (refused(q, r, false) || not_found(q, r)) return;
        const bool blobs = q.get_param_value("blobs") == "true" && !ignore_blobs_param;
        nlohmann::json siblings = nlohmann::json::array();
        for (const auto& f : files_) {
            nlohmann::json s = {{"rfilename", f.path}};
            if (blobs) {
                s["size"] = f.content.size();
                s["blobId"] = f.lfs ? hex_digest(EVP_sha1(), "", "pointer:" + f.sha256) : f.blob_id;
                if (f.lfs)
                    s["lfs"] = {
                        {"sha256", f.sha256}, {"size", f.content.size()}, {"pointerSize", 134}};
            }
            siblings.push_back(s);
        }
        nlohmann::json j = {{"id", repo_id_}, {"sha", kCommit}, {"siblings", siblings}};
        r.set_content(j.dump(), "application/json");
    }

    void tree(const httplib::Request& q, httplib::Response& r) {
        ++api_requests;
        if (refused(q, r, false) || not_found(q, r)) return;
        const size_t begin = q.has_param("cursor") ? std::stoul(q.get_param_value("cursor")) : 0;
        const size_t end = std::min(files_.size(), begin + static_cast<size_t>(tree_page_size));
        nlohmann::json entries = nlohmann::json::array();
        for (size_t i = begin; i < end; ++i) {
            const File& f = files_[i];
            nlohmann::json e = {{"type", "file"}, {"path", f.path}, {"size", f.content.size()}};
            e["oid"] = f.lfs ? hex_digest(EVP_sha1(), "", "pointer:" + f.sha256) : f.blob_id;
            if (f.lfs) e["lfs"] = {{"oid", f.sha256}, {"size", f.content.size()}};
            entries.push_back(e);
        }
        if (begin == 0) entries.push_back({{"type", "directory"}, {"path", "sub"}, {"oid", "x"}});
        if (end < files_.size()) {
            r.set_header("Link", "<" + endpoint() + "/api/models/" + repo_id_ + "/tree/" + kCommit +
                                     "?recursive=true&cursor=" + std::to_string(end) +
                                     ">; rel=\"next\"");
        }
        r.set_content(entries.dump(), "application/json");
    }

    void resolve(const httplib::Request& q, httplib::Response& r) {
        ++file_requests;
        if (refused(q, r, true) || not_found(q, r)) return;
        const File* f = nullptr;
        for (const auto& x : files_)
            if (x.path == q.matches[3]) f = &x;
        if (!f) {
            r.status = 404;
            r.set_header("X-Error-Code", "EntryNotFound");
            return;
        }
        r.set_header("X-Repo-Commit", kCommit);
        r.set_header("X-Linked-Size", std::to_string(f->content.size()));
        if (f->lfs) {
            r.set_header("X-Linked-Etag", "\"" + f->sha256 + "\"");
            r.set_header("ETag", "\"" + f->sha256 + "\"");
            r.set_redirect("/cdn/" + f->sha256, 302);
            return;
        }
        r.set_header("ETag", "\"" + f->blob_id + "\"");
        serve(*f, r);
    }

    void cdn(const httplib::Request& q, httplib::Response& r) {
        if (refused(q, r, true)) return;
        for (const auto& f : files_) {
            if (f.lfs && f.sha256 == q.matches[1]) return serve(f, r);
        }
        r.status = 404;
    }

    void serve(const File& f, httplib::Response& r) {
        int64_t abort_after = -1;
        bool corrupt = false;
        {
            std::lock_guard lock(mu_);
            if (faults_.abort_path == f.path && faults_.abort_after >= 0) {
                abort_after = faults_.abort_after;
                faults_.abort_after = -1;  // once
            }
            if (faults_.corrupt_path == f.path && faults_.corrupt_times > 0) {
                --faults_.corrupt_times;
                corrupt = true;
            }
        }
        auto sent = std::make_shared<int64_t>(0);
        const size_t bad_at = f.content.size() / 2;
        // httplib applies the Range itself: offset/length arrive already narrowed to it.
        r.set_content_provider(
            f.content.size(), "application/octet-stream",
            [this, &f, sent, abort_after, corrupt, bad_at](size_t offset, size_t length,
                                                           httplib::DataSink& sink) {
                size_t n = std::min<size_t>(length, 64 * 1024);
                bool cut = false;
                if (abort_after >= 0 && *sent + static_cast<int64_t>(n) >= abort_after) {
                    n = static_cast<size_t>(abort_after - *sent);
                    cut = true;
                }
                std::string chunk = f.content.substr(offset, n);
                if (corrupt && bad_at >= offset && bad_at < offset + n)
                    chunk[bad_at - offset] ^= 0x5a;
                if (n > 0 && !sink.write(chunk.data(), n)) return false;
                *sent += static_cast<int64_t>(n);
                bytes_served += static_cast<int64_t>(n);
                return !cut;
            });
    }

    std::string repo_id_;
    std::vector<File> files_;
    httplib::Server server_;
    std::thread thread_;
    int port_ = 0;
    std::mutex mu_;
    Faults faults_;
    std::vector<std::string> auth_seen_, ranges_seen_;
};

}  // namespace quantlens::hub::testing
