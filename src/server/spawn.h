// Child processes started by the web server: each job runs as `quantlens <command> ...`
// (the server's own executable, /proc/self/exe), detached from the request that started it,
// with stdin from /dev/null and stdout+stderr appended to a log file. Arguments are passed as
// an argv vector (no shell), after the API layer validated every one of them.
#pragma once

#include <sys/types.h>

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace quantlens::server {

class Children {
  public:
    ~Children();  // children keep running (jobs outlive the server); only zombies are reaped
    // Starts argv[0] with argv and this process's environment plus `extra_env` ("NAME=value",
    // replacing a variable of that name): the way to hand a child a secret (a Hub token) that
    // must not show in its argv, the job store or `ps`. Throws Error when it cannot start.
    pid_t spawn(const std::vector<std::string>& argv, const std::string& log_path,
                const std::vector<std::string>& extra_env = {});
    // Reaps finished children; returns the exit code of `pid` once it has exited (-1 for a
    // signal), nullopt while it runs or when it is unknown.
    std::optional<int> exit_code(pid_t pid);
    void reap_all();

  private:
    std::mutex mutex_;
    std::map<pid_t, std::optional<int>> children_;
};

// The last `max_bytes` of a file (a child's log), "" when unreadable.
std::string tail_of_file(const std::string& path, size_t max_bytes = 2000);

}  // namespace quantlens::server
