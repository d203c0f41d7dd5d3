// `quantlens jobs list|show|pause|resume|cancel|rm|merge`: the job store from the terminal.
// Every subcommand takes --store PATH (default: $QUANTLENS_STORE or
// ~/.cache/quantlens/jobs.sqlite) and --json (machine-readable output on stdout).
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <ctime>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli/command.h"
#include "core/error.h"
#include "jobs/merge.h"
#include "jobs/runner.h"
#include "jobs/store.h"

namespace quantlens::cli {
namespace {

using namespace quantlens::jobs;

struct JobsOptions {
    std::string store;
    bool json = false;
    int64_t id = 0;
    bool force = false;
    std::string kind, state;
    bool current = false;
    std::vector<std::string> paths;
};

std::string format_time(double t) {
    if (t <= 0) return "-";
    const std::time_t s = static_cast<std::time_t>(t);
    std::tm tm{};
    localtime_r(&s, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}

std::string format_duration(double s) {
    if (s < 60) return fmt::format("{:.1f}s", s);
    const auto total = static_cast<int64_t>(std::llround(s));
    if (total < 3600) return fmt::format("{}m{:02}s", total / 60, total % 60);
    return fmt::format("{}h{:02}m", total / 3600, (total % 3600) / 60);
}

std::string progress_text(const Job& job) {
    if (job.progress_total <= 0) return job.state == JobState::done ? "100%" : "-";
    return fmt::format("{:.1f}%", 100.0 * job.fraction());
}

std::string short_model(const std::string& model) {
    std::string name = std::filesystem::path(model).filename().string();
    if (name.empty()) name = model;
    return name.size() > 28 ? name.substr(0, 27) + "…" : name;
}

// Commands that only read or change existing jobs never create a store file.
Store open_existing(const JobsOptions& o) {
    return Store(resolve_store_path(o.store), {.create = false});
}

int run_list(const JobsOptions& o) {
    const std::string path = resolve_store_path(o.store);
    if (!std::filesystem::exists(path)) {
        if (o.json)
            fmt::print("[]\n");
        else
            fmt::print("no jobs: {} does not exist yet\n", path);
        return 0;
    }
    Store store(path, {.create = false});
    JobFilter filter;
    if (!o.kind.empty()) {
        filter.kind = parse_kind(o.kind);
        QL_CHECK(filter.kind, "jobs list: unknown kind '{}' ({})", o.kind, kind_names());
    }
    if (!o.state.empty()) {
        filter.state = parse_state(o.state);
        QL_CHECK(filter.state, "jobs list: unknown state '{}' ({})", o.state, state_names());
    }
    const auto jobs = store.list_jobs(filter);
    if (o.json) {
        nlohmann::json out = nlohmann::json::array();
        for (const Job& j : jobs) out.push_back(to_json(j));
        fmt::print("{}\n", out.dump(2));
        return 0;
    }
    if (jobs.empty()) {
        fmt::print("no jobs in {}\n", store.path());
        return 0;
    }
    fmt::print("{:>5}  {:<9}  {:<11}  {:>8}  {:<28}  {:<19}  {:>8}\n", "ID", "KIND", "STATE",
               "PROGRESS", "MODEL", "STARTED", "ELAPSED");
    for (const Job& j : jobs) {
        const std::string state = j.requested == StopRequest::none
                                      ? std::string(j.status())
                                      : fmt::format("{}*", j.status());  // a request is pending
        fmt::print("{:>5}  {:<9}  {:<11}  {:>8}  {:<28}  {:<19}  {:>8}\n", j.id, kind_name(j.kind),
                   state, progress_text(j), short_model(j.model), format_time(j.started),
                   format_duration(j.elapsed));
    }
    return 0;
}

int run_show(const JobsOptions& o) {
    Store store = open_existing(o);
    const Job j = store.get_job(o.id);
    const ItemCounts items = store.item_counts(o.id);
    const size_t n_units = store.units(o.id).size();
    const size_t n_measurements = store.measurements(o.id).size();
    const auto artifacts = store.artifact_names(o.id);
    if (o.json) {
        nlohmann::json out = to_json(j);
        out["items"] = {{"total", items.total}, {"done", items.done}, {"pending", items.pending()}};
        out["units"] = n_units;
        out["measurements"] = n_measurements;
        out["artifacts"] = artifacts;
        fmt::print("{}\n", out.dump(2));
        return 0;
    }
    fmt::print("job {} ({}) in {}\n", j.id, kind_name(j.kind), store.path());
    fmt::print("  state       {}{}\n", j.status(),
               j.requested == StopRequest::none
                   ? ""
                   : fmt::format(" ({} requested)", request_name(j.requested)));
    fmt::print("  model       {}{}\n", j.model.empty() ? "-" : j.model,
               j.model_hash.empty() ? "" : "  (hash " + j.model_hash + ")");
    if (!j.text_hash.empty()) fmt::print("  text hash   {}\n", j.text_hash);
    fmt::print("  params      {}\n", j.params);
    if (!j.command.empty()) fmt::print("  command     {}\n", j.command);
    fmt::print("  progress    {}/{} ({}){}\n", j.progress_done, j.progress_total, progress_text(j),
               j.message.empty() ? "" : "  " + j.message);
    fmt::print("  items       {} done, {} pending\n", items.done, items.pending());
    fmt::print("  results     {} units, {} measurements, {} artifacts{}\n", n_units, n_measurements,
               artifacts.size(),
               artifacts.empty() ? "" : fmt::format(" ({})", fmt::join(artifacts, ", ")));
    fmt::print("  created     {}\n  started     {}\n  updated     {}\n  finished    {}\n",
               format_time(j.created), format_time(j.started), format_time(j.updated),
               format_time(j.finished));
    fmt::print("  elapsed     {}\n", format_duration(j.elapsed));
    if (j.state == JobState::running)
        fmt::print("  process     pid {} on {}, last heartbeat {}\n", j.pid, j.host,
                   format_time(j.heartbeat));
    if (!j.error.empty()) fmt::print("  error       {}\n", j.error);
    if (j.interrupted || j.state == JobState::paused || j.state == JobState::failed)
        fmt::print("resume it with: quantlens jobs resume {}{}\n", j.id,
                   o.store.empty() ? "" : " --store " + o.store);
    return 0;
}

void print_job_line(const JobsOptions& o, const Job& j, const std::string& what) {
    if (o.json)
        fmt::print("{}\n", to_json(j).dump(2));
    else
        fmt::print("job {}: {}\n", j.id, what);
}

// pause / cancel: done at once for a job not running, else asked of its process.
int request_stop(const JobsOptions& o, bool cancel) {
    Store store = open_existing(o);
    const Job j = cancel ? store.cancel(o.id) : store.pause(o.id);
    const char* what = cancel ? "cancel" : "pause";
    print_job_line(o, j,
                   j.state == (cancel ? JobState::cancelled : JobState::paused)
                       ? std::string(cancel ? "cancelled" : "paused")
                       : fmt::format("{} requested; its process (pid {}) stops after the "
                                     "current item",
                                     what, j.pid));
    return 0;
}

int run_pause(const JobsOptions& o) {
    return request_stop(o, false);
}

int run_cancel(const JobsOptions& o) {
    return request_stop(o, true);
}

int run_resume(const JobsOptions& o) {
    Store store = open_existing(o);
    const Job j = store.resume(o.id);
    if (j.state == JobState::running) {  // a pending pause request was taken back
        print_job_line(o, j, "pause request withdrawn; it keeps running");
        return 0;
    }
    const JobRunner* runner = find_job_runner(j.kind);
    if (!runner) {
        print_job_line(
            o, j,
            fmt::format(
                "queued; this build has no {} runner to continue it here{}", kind_name(j.kind),
                j.command.empty() ? "" : "; run the command that started it:\n  " + j.command));
        return 0;
    }
    if (!o.json)
        fmt::print("job {}: resuming {} ({} items pending)\n", j.id, kind_name(j.kind),
                   store.item_counts(j.id).pending());
    store.start(j.id);
    return (*runner)(store, j.id);
}

int run_rm(const JobsOptions& o) {
    Store store = open_existing(o);
    const Job j = store.get_job(o.id);
    store.remove(o.id, o.force);
    print_job_line(o, j, "removed");
    return 0;
}

int run_merge(const JobsOptions& o) {
    std::string out_path;
    std::vector<std::string> shard_args = o.paths;
    if (o.current) {
        out_path = resolve_store_path(o.store);
    } else {
        QL_CHECK(o.paths.size() >= 2,
                 "jobs merge: give OUT_STORE and at least one SHARD store (or --current to "
                 "merge into the current store)");
        out_path = o.paths.front();
        shard_args.erase(shard_args.begin());
    }
    QL_CHECK(!shard_args.empty(), "jobs merge: no SHARD store given");
    std::vector<ShardRef> shards;
    for (const auto& arg : shard_args) shards.push_back(parse_shard_ref(arg));
    Store out(out_path);
    const MergeResult r = merge_shards(out, shards);
    if (o.json) {
        fmt::print("{}\n", nlohmann::json{{"store", out.path()},
                                          {"job", r.job_id},
                                          {"state", state_name(r.state)},
                                          {"items_done", r.items_done},
                                          {"items_pending", r.items_pending},
                                          {"measurements", r.measurements}}
                               .dump(2));
        return 0;
    }
    fmt::print(
        "merged {} shard{} into job {} of {}: {} items done, {} pending, {} measurements "
        "({})\n",
        shards.size(), shards.size() == 1 ? "" : "s", r.job_id, out.path(), r.items_done,
        r.items_pending, r.measurements, state_name(r.state));
    return 0;
}

}  // namespace

QL_COMMAND(jobs, JobsOptions, "List, inspect, pause, resume, cancel, remove and merge jobs") {
    using namespace quantlens::cli;
    add_store_option(cmd, o->store);
    cmd.add_flag("--json", o->json, "Machine-readable output");
    cmd.require_subcommand(1);

    auto add = [&](const char* name, const char* help) {
        CLI::App* sub = cmd.add_subcommand(name, help);
        sub->fallthrough();  // --store / --json may come after the subcommand too
        return sub;
    };
    CLI::App* list = add("list",
                         "Table of jobs: id, kind, state, progress, model, started, "
                         "elapsed (* = a pause/cancel request is pending)");
    list->add_option("--kind", o->kind, "Only jobs of this kind");
    list->add_option("--state", o->state, "Only jobs in this state");
    auto with_id = [&](const char* name, const char* help) {
        CLI::App* sub = add(name, help);
        sub->add_option("ID", o->id, "Job id")->required();
        return sub;
    };
    CLI::App* show = with_id("show", "Everything about one job");
    CLI::App* pause = with_id("pause", "Pause a job (a running one stops after its current item)");
    CLI::App* resume = with_id("resume", "Continue a paused, failed or interrupted job");
    CLI::App* cancel = with_id("cancel", "Cancel a job (kept in the store; rm deletes it)");
    CLI::App* rm = with_id("rm", "Delete a job and all of its results");
    rm->add_flag("--force", o->force, "Also remove a job whose process is still running");
    CLI::App* merge = add("merge",
                          "Merge shard stores into one job: merge OUT_STORE SHARD... "
                          "(SHARD = PATH or PATH:JOB_ID)");
    merge->add_option("STORES", o->paths, "OUT_STORE SHARD... (or SHARD... with --current)")
        ->required();
    merge->add_flag("--current", o->current, "Merge into the current store (--store) instead");

    return [=]() -> int {
        if (list->parsed()) return run_list(*o);
        if (show->parsed()) return run_show(*o);
        if (pause->parsed()) return run_pause(*o);
        if (resume->parsed()) return run_resume(*o);
        if (cancel->parsed()) return run_cancel(*o);
        if (rm->parsed()) return run_rm(*o);
        if (merge->parsed()) return run_merge(*o);
        return 1;
    };
}

}  // namespace quantlens::cli
