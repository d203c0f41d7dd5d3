#include "hub/http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <mutex>

#include "core/error.h"
#include "hub/env.h"

namespace quantlens::hub {
namespace {

constexpr size_t kMaxErrorBody = 64 * 1024;  // an error page is for the message, not storage

void global_init() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Transfer {
    CURL* curl = nullptr;
    HttpResponse response;
    const HttpClient::Sink* sink = nullptr;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    const size_t len = size * n;
    std::string line(data, len);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    if (line.rfind("HTTP/", 0) == 0) {
        // A new answer (after a redirect or a 100-continue): forget the previous headers.
        t->response.headers.clear();
        const size_t sp = line.find(' ');
        if (sp != std::string::npos) t->response.status = std::atol(line.c_str() + sp + 1);
        return len;
    }
    const size_t colon = line.find(':');
    if (colon == std::string::npos) return len;
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    size_t v = colon + 1;
    while (v < line.size() && (line[v] == ' ' || line[v] == '\t')) ++v;
    t->response.headers[name] = line.substr(v);
    return len;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    const size_t len = size * n;
    long status = 0;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
    t->response.status = status;
    if (t->sink && (status == 200 || status == 206)) {
        return (*t->sink)(t->response, data, len) ? len : 0;
    }
    if (t->sink && t->response.body.size() >= kMaxErrorBody) return len;
    t->response.body.append(data, len);
    return len;
}

}  // namespace

std::string HttpResponse::header(const std::string& lower_case_name) const {
    auto it = headers.find(lower_case_name);
    return it == headers.end() ? std::string() : it->second;
}

double retry_delay(const HttpResponse& r, int attempt, const RetryPolicy& policy) {
    if (attempt >= policy.max_retries) return -1;
    if (r.transport_failed()) {
        // Our own sink refused the data (disk full, bad range): retrying cannot help.
        if (r.curl_code == CURLE_WRITE_ERROR || r.curl_code == CURLE_ABORTED_BY_CALLBACK) return -1;
    } else if (!(r.status == 429 || r.status == 500 || r.status == 502 || r.status == 503 ||
                 r.status == 504)) {
        return -1;
    }
    const double backoff = policy.base_seconds * std::ldexp(1.0, attempt);
    double wait = std::min(backoff, policy.max_wait_seconds);
    const std::string after = r.header("retry-after");
    if (!after.empty() &&
        std::all_of(after.begin(), after.end(), [](unsigned char c) { return std::isdigit(c); })) {
        wait = std::min(std::atof(after.c_str()), policy.max_wait_seconds);
    }
    return wait;
}

HttpClient::HttpClient(std::string token) : token_(std::move(token)) {
    global_init();
    curl_ = curl_easy_init();
    QL_ASSERT(curl_ != nullptr);
}

HttpClient::~HttpClient() {
    curl_easy_cleanup(static_cast<CURL*>(curl_));
}

HttpResponse HttpClient::get(const std::string& url) {
    return perform(url, -1, nullptr);
}

HttpResponse HttpClient::get_to(const std::string& url, int64_t range_start, const Sink& sink) {
    return perform(url, range_start, &sink);
}

HttpResponse HttpClient::perform(const std::string& url, int64_t range_start, const Sink* sink) {
    CURL* curl = static_cast<CURL*>(curl_);
    curl_easy_reset(curl);
    Transfer t;
    t.curl = curl;
    t.sink = sink;
    char error_buffer[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);  // worker threads
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "quantlens/0.1 (libcurl)");
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
    // A stalled connection (under 1 KiB/s for a minute) is dropped and retried with a Range.
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
    std::string range;
    if (range_start > 0) {
        range = std::to_string(range_start) + "-";
        curl_easy_setopt(curl, CURLOPT_RANGE, range.c_str());
    }
    curl_slist* headers = nullptr;
    std::string auth;
    if (!token_.empty()) {
        auth = "Authorization: Bearer " + token_;
        headers = curl_slist_append(headers, auth.c_str());
    }
    if (headers) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);

    const CURLcode code = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 0) t.response.status = status;
    t.response.curl_code = static_cast<int>(code);
    if (code != CURLE_OK) {
        t.response.curl_error = redact_token(
            error_buffer[0] ? std::string(error_buffer) : std::string(curl_easy_strerror(code)),
            token_);
    }
    curl_slist_free_all(headers);
    // The header list is gone; make sure the handle does not keep a dangling pointer.
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, nullptr);
    std::fill(auth.begin(), auth.end(), '\0');
    return std::move(t.response);
}

}  // namespace quantlens::hub
