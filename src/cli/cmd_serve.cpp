// `quantlens serve [--port 8080] [--host 127.0.0.1 [--allow-remote]] [--store S] [--models-dir
// D]...`: the local web app over the job store (src/server/server.h). Ctrl-C stops it; jobs it
// started keep running in their own processes and can be followed again after a restart.
#include <pthread.h>

#include <csignal>
#include <filesystem>
#include <memory>
#include <thread>

#include <fmt/format.h>

#include "cli/command.h"
#include "core/error.h"
#include "jobs/store.h"
#include "server/server.h"

namespace quantlens::cli {
namespace {

struct ServeOptions {
    server::ServerOptions server;
    std::string store;
    std::vector<std::string> models_dirs;
};

int run_serve(ServeOptions opts) {
    opts.server.store_path = jobs::resolve_store_path(opts.store);
    opts.server.model_roots = {std::filesystem::current_path().string()};
    for (const auto& d : opts.models_dirs) opts.server.model_roots.push_back(d);
    // Signals go to one waiting thread, which stops the server cleanly (handlers cannot).
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    server::Server srv(opts.server);  // refuses a wildcard --host without --allow-remote
    if (opts.server.allow_remote)
        fmt::print(stderr,
                   "warning: --allow-remote: any machine that reaches {}:{} can start jobs and "
                   "read files under the allowed directories; there is no authentication\n",
                   opts.server.host, opts.server.port);
    const int port = srv.bind();
    std::thread waiter([&] {
        int sig = 0;
        sigwait(&signals, &sig);
        srv.stop();
    });
    fmt::print("quantlens serve: http://{}:{}/  (store {}; Ctrl-C to stop)\n",
               opts.server.host.find(':') != std::string::npos ? "[" + opts.server.host + "]"
                                                               : opts.server.host,
               port, opts.server.store_path);
    std::fflush(stdout);
    srv.run();
    pthread_kill(waiter.native_handle(), SIGTERM);  // wake the waiter if we stopped otherwise
    waiter.join();
    return 0;
}

}  // namespace

QL_COMMAND(serve, ServeOptions, "Local web app: jobs, models, reports and the recipe editor") {
    cmd.add_option("--port,-p", o->server.port, "TCP port (0 = any free port)")
        ->capture_default_str();
    cmd.add_option("--host", o->server.host, "Address to bind (default loopback only)")
        ->capture_default_str();
    cmd.add_flag("--allow-remote", o->server.allow_remote,
                 "With --host 0.0.0.0 or ::, accept requests for any host name (no "
                 "authentication: only on a trusted network)");
    add_store_option(cmd, o->store);
    cmd.add_option("--models-dir", o->models_dirs,
                   "Extra directory the app may browse (repeatable)");
    cmd.add_option("--recipes-dir", o->server.recipes_dir, "Where saved recipes go")
        ->capture_default_str();
    cmd.add_option("--output-dir", o->server.output_dir,
                   "The only folder jobs started from the app write into (default "
                   "<store>.outputs)");
    cmd.add_option("--job-exe", o->server.job_exe, "Executable that runs started jobs (tests)")
        ->group("");  // hidden
    return [o] { return quantlens::cli::run_serve(*o); };
}

}  // namespace quantlens::cli
