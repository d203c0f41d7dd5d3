// Internal to src/server: the state shared by the route handlers and small reply helpers.
#pragma once

#include <httplib.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "jobs/store.h"
#include "server/safe_path.h"
#include "server/server.h"
#include "server/spawn.h"

namespace quantlens::server {

// httplib::Server with its request processing reachable without a socket (Server::handle).
class HttpServer : public httplib::Server {
  public:
    using httplib::Server::process_request;
};

struct Server::Impl {
    ServerOptions options;
    std::unique_ptr<jobs::Store> store;
    std::unique_ptr<PathPolicy> paths;
    HttpServer http;
    Children children;
    std::atomic<int> open_streams{0};
    std::atomic<bool> stopping{false};
    int bound_port = 0;
    // Commands that record no job (eval, quantize, verify, pull), so the app can follow them
    // through GET /api/processes[/:pid], finished ones included (a failed pull is resumed
    // from that list). At most kMaxProcesses, the oldest finished ones forgotten first.
    struct Process {
        std::string kind, log;
        std::string repo, revision;  // pull only; its token is never kept
        int64_t seq = 0;             // start order
    };
    static constexpr size_t kMaxProcesses = 256;
    std::mutex processes_mutex;
    std::map<pid_t, Process> processes;
    int64_t process_seq = 0;
    // The log of the child that ran a job this server started (its printed result: compare's
    // and audit's tables), for GET /api/jobs/:id/output.
    std::map<int64_t, std::string> job_logs;

    void remember_process(pid_t pid, Process p);
    // job_json plus "has_output": whether this server ran (or resumed) it and kept its log.
    nlohmann::json job_reply(const jobs::Job& job);
    nlohmann::json process_json(pid_t pid, const Process& p);

    void routes();
    void job_routes();  // server_jobs.cpp
    std::optional<std::vector<std::string>> job_argv(const nlohmann::json& body,
                                                     std::string* why) const;
};

void reply_json(httplib::Response& res, const nlohmann::json& body, int status = 200);
void reply_error(httplib::Response& res, int status, const std::string& message);
// Parses a JSON request body; on failure replies 400 and returns nullopt.
std::optional<nlohmann::json> parse_body(const httplib::Request& req, httplib::Response& res);
// jobs::to_json plus an ETA estimate for running jobs.
nlohmann::json job_json(const jobs::Job& job);

}  // namespace quantlens::server
