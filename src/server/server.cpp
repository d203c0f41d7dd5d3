// Server setup: options, security checks common to every route, static assets, models and
// recipes routes, binding (with a clear message for a port in use) and the serve loop. The
// jobs routes are in server_jobs.cpp.
#include "server/server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "core/error.h"
#include "report/web_assets.h"
#include "server/catalog.h"
#include "server/model_tree.h"
#include "server/recipes.h"
#include "server/server_impl.h"

namespace quantlens::server {

namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxBody = 16u << 20;  // recipes of 70B models are < 1 MB; 16 MB is generous

// Files the app may load; anything else under /assets is 404 (no path reaches the disk).
const char* const kAssets[][2] = {{"app.js", "src/app.js"},
                                  {"recipe.js", "src/recipe.js"},
                                  {"report.js", "src/report.js"},
                                  {"style.css", "src/style.css"}};

bool is_wildcard(const std::string& host) {
    return host == "0.0.0.0" || host == "::" || host == "[::]";
}

bool host_allowed(const std::string& host_header, const std::string& bound_host,
                  bool allow_remote) {
    if (allow_remote && is_wildcard(bound_host)) return true;  // `serve --allow-remote`
    std::string host = host_header;
    if (!host.empty() && host[0] == '[') {
        host = host.substr(0, host.find(']') + 1);
    } else if (auto colon = host.rfind(':'); colon != std::string::npos) {
        host = host.substr(0, colon);
    }
    return host == "localhost" || host == "127.0.0.1" || host == "[::1]" || host == bound_host;
}

// cpp-httplib 0.11 listens with a backlog of 5, which drops connections under a burst of
// concurrent clients (they retry after a second). Raise it on our listening socket.
void raise_listen_backlog(int port) {
    for (int fd = 3; fd < 4096; ++fd) {
        int listening = 0;
        socklen_t len = sizeof(listening);
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening)
            continue;
        sockaddr_storage addr{};
        socklen_t alen = sizeof(addr);
        if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) != 0) continue;
        int p = addr.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port)
                : addr.ss_family == AF_INET6
                    ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                    : -1;
        if (p == port) listen(fd, SOMAXCONN);
    }
}

// Says why a port cannot be bound, before cpp-httplib (which only reports false) tries.
void probe_port(const std::string& host, int port) {
    if (port == 0) return;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    const int gai = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
    QL_CHECK(gai == 0, "--host {}: cannot resolve: {}", host, gai_strerror(gai));
    const int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    const int rc = ::bind(fd, res->ai_addr, res->ai_addrlen);
    const int err = errno;
    ::close(fd);
    freeaddrinfo(res);
    QL_CHECK(!(rc != 0 && err == EADDRINUSE),
             "{}:{} is already in use (another `quantlens serve`?): stop it or choose another "
             "port with --port",
             host, port);
    QL_CHECK(rc == 0, "cannot listen on {}:{}: {}", host, port, std::strerror(err));
}

}  // namespace

void reply_json(httplib::Response& res, const nlohmann::json& body, int status) {
    res.status = status;
    res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                    "application/json");
}

void reply_error(httplib::Response& res, int status, const std::string& message) {
    reply_json(res, {{"error", message}}, status);
}

std::optional<nlohmann::json> parse_body(const httplib::Request& req, httplib::Response& res) {
    nlohmann::json body = nlohmann::json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
        reply_error(res, 400, "request body is not a JSON object");
        return std::nullopt;
    }
    return body;
}

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>()) {
    Impl& s = *impl_;
    s.options = std::move(options);
    if (s.options.model_roots.empty()) s.options.model_roots.push_back(fs::current_path().string());
    if (s.options.log_dir.empty()) s.options.log_dir = s.options.store_path + ".logs";
    if (s.options.output_dir.empty()) s.options.output_dir = s.options.store_path + ".outputs";
    std::error_code ec;
    fs::create_directories(s.options.output_dir, ec);
    QL_CHECK(!ec, "{}: cannot create the output folder: {}", s.options.output_dir, ec.message());
    s.options.output_dir = fs::canonical(s.options.output_dir).string();
    s.options.model_roots.push_back(s.options.output_dir);
    // Saved recipes are inputs of quantize and verify jobs: readable like the outputs.
    fs::create_directories(s.options.recipes_dir, ec);
    QL_CHECK(!ec, "{}: cannot create the recipe folder: {}", s.options.recipes_dir, ec.message());
    s.options.model_roots.push_back(fs::canonical(s.options.recipes_dir).string());
    QL_CHECK(s.options.port >= 0 && s.options.port <= 65535, "--port {}: expected 0..65535",
             s.options.port);
    QL_CHECK(s.options.threads >= 4, "server threads {}: expected at least 4", s.options.threads);
    QL_CHECK(
        s.options.max_event_streams >= 1 && s.options.max_event_streams <= s.options.threads / 2,
        "max_event_streams {}: expected 1..{} (half the {} worker threads, so that the "
        "rest keep answering)",
        s.options.max_event_streams, s.options.threads / 2, s.options.threads);
    QL_CHECK(!is_wildcard(s.options.host) || s.options.allow_remote,
             "--host {} accepts connections from other machines, which may then start jobs "
             "and read files under the allowed roots; add --allow-remote to do that knowingly",
             s.options.host);
    s.paths = std::make_unique<PathPolicy>(s.options.model_roots);
    s.store = std::make_unique<jobs::Store>(s.options.store_path);
    s.routes();
    s.job_routes();
}

Server::~Server() {
    stop();
}

void Server::Impl::routes() {
    const int threads = options.threads;
    http.new_task_queue = [threads] {
        return new httplib::ThreadPool(static_cast<size_t>(threads));
    };
    http.set_payload_max_length(kMaxBody);
    http.set_read_timeout(10, 0);
    http.set_write_timeout(10, 0);
    http.set_keep_alive_max_count(100);
    // An idle keep-alive connection holds a worker thread; release it soon.
    http.set_keep_alive_timeout(2);

    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
        res.set_header("X-Content-Type-Options", "nosniff");
        res.set_header("Cache-Control", "no-store");
        if (!host_allowed(req.get_header_value("Host"), options.host, options.allow_remote)) {
            reply_error(
                res, 403,
                "Host header '" + req.get_header_value("Host") + "' is not this server's address");
            return httplib::Server::HandlerResponse::Handled;
        }
        if (req.method == "POST" &&
            req.get_header_value("Content-Type").rfind("application/json", 0) != 0) {
            reply_error(res, 415, "POST requests must have Content-Type: application/json");
            return httplib::Server::HandlerResponse::Handled;
        }
        return httplib::Server::HandlerResponse::Unhandled;
    });
    http.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
            try {
                std::rethrow_exception(ep);
            } catch (const Error& e) {
                reply_error(res, 400, e.what());
            } catch (const nlohmann::json::exception& e) {
                // A request field of the wrong type that a handler did not check itself.
                reply_error(res, 400,
                            std::string("request JSON has a field of the wrong type: ") + e.what());
            } catch (const std::exception& e) {
                reply_error(res, 500, std::string("internal error: ") + e.what());
            } catch (...) {
                reply_error(res, 500, "internal error");
            }
        });
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
        if (res.body.empty()) {
            const int status = res.status;
            reply_error(res, status,
                        status == 404 ? "no such endpoint: " + req.method + " " + req.path
                                      : "request failed with status " + std::to_string(status));
        }
    });

    http.Get("/", [](const httplib::Request&, httplib::Response& res) {
        res.set_content(report::web_asset("app.html"), "text/html; charset=utf-8");
    });
    http.Get("/assets/([A-Za-z0-9._-]+)", [](const httplib::Request& req, httplib::Response& res) {
        const std::string name = req.matches[1];
        if (name == "plotly.min.js") {
            res.set_content(report::plotly_js(), "application/javascript; charset=utf-8");
            return;
        }
        for (const auto& [public_name, path] : kAssets)
            if (name == public_name) {
                res.set_content(report::web_asset(path), std::string(report::mime_type(path)));
                return;
            }
        reply_error(res, 404, "no such asset: " + name);
    });
    http.Get("/api/health", [](const httplib::Request&, httplib::Response& res) {
        reply_json(res, {{"ok", true}});
    });
    http.Get("/api/models", [this](const httplib::Request& req, httplib::Response& res) {
        const std::string requested = req.get_param_value("path");
        if (requested.empty()) {
            nlohmann::json roots = nlohmann::json::array();
            for (const auto& r : paths->roots()) roots.push_back(r.string());
            reply_json(res, {{"kind", "roots"}, {"roots", roots}});
            return;
        }
        std::string why;
        const auto path = paths->resolve(requested, &why);
        if (!path) {
            reply_error(res, why.rfind("path ", 0) == 0 ? 400 : 404, why);
            return;
        }
        reply_json(res, describe_path(*path));
    });
    http.Get("/api/types", [](const httplib::Request&, httplib::Response& res) {
        reply_json(res, types_json());
    });
    http.Get("/api/presets", [this](const httplib::Request& req, httplib::Response& res) {
        std::string why;
        const auto path = paths->resolve(req.get_param_value("model"), &why);
        if (!path) return reply_error(res, 404, "model: " + why);
        reply_json(res, presets_json(*path, req.get_param_value("presets")));
    });
    http.Post("/api/recipes", [this](const httplib::Request& req, httplib::Response& res) {
        const auto body = parse_body(req, res);
        if (!body) return;
        // An existing recipe is a 409 the app answers by asking, then resending "overwrite".
        // (Malformed fields are left to save_recipe, which names them.)
        const auto& b = *body;
        const bool overwrite =
            b.contains("overwrite") && b["overwrite"].is_boolean() && b["overwrite"].get<bool>();
        if (!overwrite && b.contains("name") && b["name"].is_string() &&
            is_safe_name(b["name"].get<std::string>())) {
            const bool yaml = b.contains("format") && b["format"] == "yaml";
            const std::string name = b["name"];
            const fs::path target =
                fs::path(options.recipes_dir) / (name + (yaml ? ".yaml" : ".json"));
            std::error_code ec;
            if (fs::symlink_status(target, ec).type() != fs::file_type::not_found)
                return reply_error(res, 409,
                                   "recipe '" + name + "' already exists (" +
                                       fs::absolute(target).string() +
                                       "); send \"overwrite\": true to replace it");
        }
        const SavedRecipe saved = save_recipe(*body, options.recipes_dir);
        reply_json(res,
                   {{"path", fs::absolute(saved.path).string()}, {"n_tensors", saved.n_tensors}},
                   201);
    });
}

int Server::bind() {
    Impl& s = *impl_;
    probe_port(s.options.host, s.options.port);
    if (s.options.port == 0) {
        s.bound_port = s.http.bind_to_any_port(s.options.host);
        QL_CHECK(s.bound_port > 0, "cannot listen on {} (any port)", s.options.host);
    } else {
        QL_CHECK(s.http.bind_to_port(s.options.host, s.options.port),
                 "cannot listen on {}:{} (already in use, or not an address of this machine)",
                 s.options.host, s.options.port);
        s.bound_port = s.options.port;
    }
    raise_listen_backlog(s.bound_port);
    return s.bound_port;
}

void Server::run() {
    QL_ASSERT(impl_->bound_port > 0);
    impl_->http.listen_after_bind();
}

void Server::stop() {
    impl_->stopping = true;
    if (impl_->http.is_running()) impl_->http.stop();
}

int Server::port() const {
    return impl_->bound_port;
}

HttpReply Server::handle(const std::string& method, const std::string& target,
                         const std::string& body, const std::string& content_type) {
    std::string request = method + " ";
    for (const char ch : target) {
        const auto c = static_cast<unsigned char>(ch);
        if (c <= 0x20 || c >= 0x7f)
            request += fmt::format("%{:02X}", c);
        else
            request += ch;
    }
    request += " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + content_type +
               "\r\nContent-Length: " + std::to_string(body.size()) +
               "\r\nConnection: close\r\n\r\n" + body;
    httplib::detail::BufferStream stream;
    stream.write(request.data(), request.size());
    bool closed = false;
    impl_->http.process_request(stream, true, closed, [](httplib::Request&) {});
    // The stream holds the request, then the response: "HTTP/1.1 NNN ...", headers, body.
    const std::string response = stream.get_buffer().substr(request.size());
    HttpReply reply;
    if (response.size() >= 12 && response.rfind("HTTP/1.1 ", 0) == 0)
        reply.status = std::atoi(response.substr(9, 3).c_str());
    if (const size_t end = response.find("\r\n\r\n"); end != std::string::npos)
        reply.body = response.substr(end + 4);
    return reply;
}

}  // namespace quantlens::server
