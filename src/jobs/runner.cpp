#include "jobs/runner.h"

#include <signal.h>

#include <atomic>
#include <map>
#include <mutex>

#include "core/output_file.h"

namespace quantlens::jobs {
namespace {

std::mutex registry_mutex;
std::map<JobKind, JobRunner>& registry() {
    static std::map<JobKind, JobRunner> runners;
    return runners;
}

std::atomic<bool> g_stop_signal{false};
static_assert(std::atomic<bool>::is_always_lock_free, "used from a signal handler");

extern "C" void on_stop_signal(int sig) {
    if (g_stop_signal.exchange(true)) {
        // Second Ctrl-C: the user wants out now. Everything recorded so far is committed;
        // a file being written is not, so its temporary goes.
        remove_live_temps_now();
        ::signal(sig, SIG_DFL);
        ::raise(sig);
    }
}

// Installs the stop-signal handlers for its lifetime and restores the previous ones.
class SignalGuard {
  public:
    SignalGuard() {
        g_stop_signal = false;
        struct sigaction sa = {};
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old_int_);
        sigaction(SIGTERM, &sa, &old_term_);
    }
    ~SignalGuard() {
        sigaction(SIGINT, &old_int_, nullptr);
        sigaction(SIGTERM, &old_term_, nullptr);
        g_stop_signal = false;
    }
    SignalGuard(const SignalGuard&) = delete;
    SignalGuard& operator=(const SignalGuard&) = delete;

  private:
    struct sigaction old_int_ = {}, old_term_ = {};
};

}  // namespace

void register_job_runner(JobKind kind, JobRunner runner) {
    std::lock_guard lock(registry_mutex);
    registry()[kind] = std::move(runner);
}

void register_job_kind(JobKind kind, std::function<bool(Store&, int64_t)> work,
                       std::function<void(Store&, int64_t)> on_done) {
    register_job_runner(
        kind, [work = std::move(work), on_done = std::move(on_done)](Store& store, int64_t id) {
            const JobState s = run_job(store, id, [&] { return work(store, id); });
            if (s == JobState::done && on_done) on_done(store, id);
            return job_exit_code(s);
        });
}

int job_exit_code(JobState state) {
    return state == JobState::done || state == JobState::paused ? 0 : 1;
}

const JobRunner* find_job_runner(JobKind kind) {
    std::lock_guard lock(registry_mutex);
    auto it = registry().find(kind);
    return it == registry().end() ? nullptr : &it->second;
}

bool stop_signal_received() {
    return g_stop_signal.load();
}

JobState run_job(Store& store, int64_t id, const std::function<bool()>& body) {
    SignalGuard guard;
    bool completed = false;
    try {
        completed = body();
    } catch (const std::exception& e) {
        // Record why, unless the job vanished or was already moved on (then just rethrow).
        if (auto job = store.find_job(id); job && job->state == JobState::running)
            store.fail(id, e.what());
        throw;
    }
    if (completed) {
        store.finish(id);
        return JobState::done;
    }
    const bool by_signal = stop_signal_received();
    const JobState state = store.honour_stop(id);
    if (by_signal && store.find_job(id)) store.set_message(id, "paused by a signal (Ctrl-C)");
    return state;
}

}  // namespace quantlens::jobs
