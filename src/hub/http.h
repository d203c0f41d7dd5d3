// A thin libcurl client for the Hub: GET into memory (API JSON) or streamed to a sink (file
// bodies, optionally from a byte offset with a Range request), redirects followed (the Hub
// sends large files to a CDN), proxies taken from the usual environment variables
// (http_proxy, https_proxy, no_proxy — libcurl reads them itself; nothing here overrides
// them). The token travels only in an `Authorization: Bearer` header, which libcurl does
// not forward when a redirect leads to another host. Nothing is logged.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

namespace quantlens::hub {

struct HttpResponse {
    long status = 0;                             // 0 when no HTTP answer arrived
    int curl_code = 0;                           // CURLcode of the transfer; 0 = completed
    std::string curl_error;                      // transport error text, empty when curl_code == 0
    std::map<std::string, std::string> headers;  // last answer's headers, lower-case names
    std::string body;  // whole body (get) or the body of a non-2xx answer (get_to)

    bool transport_failed() const { return curl_code != 0; }
    std::string header(const std::string& lower_case_name) const;
};

// Seconds to wait before retrying this answer (429 with Retry-After honoured, 5xx, dropped
// connections), or a negative value when retrying cannot help.
struct RetryPolicy {
    int max_retries = 5;
    double base_seconds = 1.0;  // back-off: base · 2^attempt
    double max_wait_seconds = 60.0;
};
double retry_delay(const HttpResponse& response, int attempt, const RetryPolicy& policy);

class HttpClient {
  public:
    // token: empty for anonymous access.
    explicit HttpClient(std::string token);
    ~HttpClient();
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;

    HttpResponse get(const std::string& url);

    // Body bytes of a 200/206 answer go to sink(head, data, n), where `head` holds the
    // status and headers; sink returns false to abort the transfer (curl_code then reports
    // a write error). The body of any other answer is kept in HttpResponse::body.
    using Sink = std::function<bool(const HttpResponse& head, const char* data, size_t n)>;
    HttpResponse get_to(const std::string& url, int64_t range_start, const Sink& sink);

  private:
    HttpResponse perform(const std::string& url, int64_t range_start, const Sink* sink);

    void* curl_ = nullptr;  // CURL*
    std::string token_;
};

}  // namespace quantlens::hub
