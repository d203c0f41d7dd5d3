#include "server/spawn.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <string_view>

#include "core/error.h"

extern char** environ;

namespace quantlens::server {

Children::~Children() {
    reap_all();
}

pid_t Children::spawn(const std::vector<std::string>& argv, const std::string& log_path,
                      const std::vector<std::string>& extra_env) {
    QL_ASSERT(!argv.empty());
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    // No O_CLOEXEC: this open happens in the child, and a close-on-exec stdout would be
    // closed by the exec itself, losing everything the command prints to stdout (and letting
    // the child's first open file become fd 1).
    posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                     0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    // Own process group: Ctrl-C on the server does not kill running jobs mid-item; they are
    // paused or cancelled through the store like any other job.
    // The server blocks SIGINT/SIGTERM in its threads (cmd_serve.cpp); a job must not inherit that.
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    std::vector<char*> env;
    for (char** e = environ; *e; ++e) {
        const std::string_view var = *e;
        bool replaced = false;
        for (const auto& x : extra_env)
            replaced |= var.substr(0, var.find('=') + 1) == x.substr(0, x.find('=') + 1);
        if (!replaced) env.push_back(*e);
    }
    for (const auto& x : extra_env) env.push_back(const_cast<char*>(x.c_str()));
    env.push_back(nullptr);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, argv[0].c_str(), &actions, &attr, args.data(), env.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    QL_CHECK(rc == 0, "cannot start {}: {}", argv[0], std::strerror(rc));
    std::lock_guard lock(mutex_);
    children_[pid] = std::nullopt;
    return pid;
}

void Children::reap_all() {
    std::lock_guard lock(mutex_);
    for (auto& [pid, code] : children_) {
        if (code) continue;
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid)
            code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
}

std::optional<int> Children::exit_code(pid_t pid) {
    reap_all();
    std::lock_guard lock(mutex_);
    auto it = children_.find(pid);
    return it == children_.end() ? std::nullopt : it->second;
}

std::string tail_of_file(const std::string& path, size_t max_bytes) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) return "";
    const std::streamoff size = in.tellg();
    const std::streamoff start = size > static_cast<std::streamoff>(max_bytes)
                                     ? size - static_cast<std::streamoff>(max_bytes)
                                     : 0;
    in.seekg(start);
    std::string out(static_cast<size_t>(size - start), '\0');
    in.read(out.data(), static_cast<std::streamsize>(out.size()));
    return out;
}

}  // namespace quantlens::server
