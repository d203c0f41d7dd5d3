// `quantlens audit ZOO.yaml [--store S] [--json] [--time-limit S]`: a sensitivity
// sweep of every model of a zoo (and a comparison of its listed quantized files), then one
// table comparing where the models break: attention vs FFN vs experts, first vs last layers.
// Running the same command again resumes an unfinished audit of the same zoo.
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "analysis/studies/audit.h"
#include "cli/command.h"
#include "core/error.h"
#include "jobs/runner.h"
#include "jobs/store.h"

namespace quantlens::cli {
namespace {

struct AuditArgs {
    std::string zoo, store;
    bool json = false;
    double time_limit = 0;
};

// After `seconds`, asks the audit and its running child jobs to pause (they stop after the
// item in progress, everything measured so far stays).
class Deadline {
  public:
    Deadline(jobs::Store& store, int64_t id, double seconds) {
        if (seconds <= 0) return;
        thread_ = std::thread([&store, id, seconds, this] {
            std::unique_lock lock(mutex_);
            if (cv_.wait_for(lock, std::chrono::duration<double>(seconds),
                             [this] { return done_; }))
                return;
            for (const std::string& name : store.artifact_names(id)) {
                if (name.rfind("child:", 0) != 0) continue;
                const auto a = store.get_artifact(id, name);
                const int64_t child = nlohmann::json::parse(a->data).at("job");
                if (store.get_job(child).state == jobs::JobState::running) store.pause(child);
            }
            store.pause(id);
        });
    }
    ~Deadline() {
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        cv_.notify_all();
        if (thread_.joinable()) thread_.join();
    }

  private:
    std::thread thread_;
    std::mutex mutex_;
    std::condition_variable cv_;
    bool done_ = false;
};

int run_audit_command(const AuditArgs& a, const std::string& command_line) {
    const Zoo zoo = load_zoo(a.zoo);
    jobs::Store store(jobs::resolve_store_path(a.store));
    bool resumed = false;
    const int64_t id = find_or_create_audit_job(store, zoo, command_line, &resumed);
    const jobs::Job job = store.get_job(id);
    if (job.state != jobs::JobState::queued) store.resume(id);
    fmt::print(stderr, "audit: {} job {} in {}\n", resumed ? "resuming" : "new", id, store.path());
    store.start(id);
    jobs::JobState state;
    {
        Deadline deadline(store, id, a.time_limit);
        state = jobs::run_job(store, id, [&] { return run_audit(store, id); });
    }
    if (state != jobs::JobState::done) {
        fmt::print(stderr, "audit: job {} is {}; run the same command again to continue\n", id,
                   jobs::state_name(state));
        return jobs::job_exit_code(state);
    }
    const auto rows = audit_rows(store, id);
    if (a.json)
        fmt::print("{}\n", audit_to_json(rows, id).dump(2));
    else
        fmt::print("audit job {}: {} models\n{}", id, zoo.models.size(), audit_table(rows));
    return 0;
}

}  // namespace

// `quantlens jobs resume ID` (and the web app) continue an audit job like any other: the job's
// parameters hold the zoo, so the store and the id are enough.
void register_audit_runner() {
    jobs::register_job_kind(
        jobs::JobKind::audit, [](jobs::Store& store, int64_t id) { return run_audit(store, id); },
        [](jobs::Store& store, int64_t id) {
            fmt::print("audit job {}\n{}", id, audit_table(audit_rows(store, id)));
        });
}

QL_COMMAND(audit, AuditArgs,
           "Sensitivity profiles of a zoo of models, compared by tensor role and depth") {
    quantlens::cli::register_audit_runner();
    cmd.add_option("ZOO", o->zoo, "Zoo file (YAML, see examples/zoo.yaml)")->required();
    add_store_option(cmd, o->store);
    cmd.add_option("--time-limit", o->time_limit,
                   "Pause after this many seconds (run the command again to continue)");
    cmd.add_flag("--json", o->json, "Print the cross-model summary as JSON (data for one chart)");
    return [o] { return quantlens::cli::run_audit_command(*o, "quantlens audit " + o->zoo); };
}

}  // namespace quantlens::cli
