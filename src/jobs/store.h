// The job store: one SQLite file (WAL mode) holding every job and its results, shared by the
// CLI commands that run jobs, `quantlens jobs`, and the web server (which reads while a job
// writes: WAL readers never block the writer).
//
// Promises:
//  - Results are normalized: `units` (what is measured: a tensor, a layer, a class),
//    `work_items` (job, unit, type) with status pending/done, `measurements`
//    (job, unit, type, metric) → value, unique per key, and `artifacts` (job, name) → JSON or
//    bytes for anything that is not a number per (unit, type) (recipes, statistics, vectors).
//  - record_item() commits an item's measurements and marks it done in ONE transaction, so
//    after a crash at any instant (kill -9) every item is either fully present with all of its
//    metrics or still pending; an item already done is never recorded twice.
//  - Every write is one IMMEDIATE transaction; a store locked by another process beyond the busy
//    timeout, a file that is not a database, a corrupt database, or a job id that does not
//    exist throw quantlens::Error naming the file (and the job).
//  - A Store is safe to use from several threads of one process (calls are serialized); other
//    processes use their own Store on the same file. Do not carry a Store across fork().
//
// Durability: synchronous=NORMAL in WAL mode — a committed item survives the process being
// killed; after a power loss the last few commits may roll back, which leaves those items
// pending (measured again), never half-written.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "jobs/job.h"

namespace quantlens::jobs {

struct StoreOptions {
    int busy_timeout_ms = 5000;  // how long to wait for another process's write lock
    // A running job on another host whose heartbeat is older than this is "interrupted"
    // (on the same host the pid decides, since one item of a large model may take minutes).
    double stale_after_s = 600;
    // false: a missing file is an Error instead of a new empty store (read-only commands,
    // so a mistyped --store is reported rather than silently created).
    bool create = true;
};

// What a job measures one (unit, type) at a time. layer = -1 when the unit spans layers.
struct Unit {
    std::string name;
    int64_t layer = -1;
    std::string role;  // attn_q, ffn_down, … ("" when mixed)
    int64_t n_params = 0;
    std::string extra = "{}";  // JSON object text (tensor list of a layer unit, shapes, …)
    bool operator==(const Unit&) const = default;
};

struct WorkItem {
    std::string unit, type;
    bool operator==(const WorkItem&) const = default;
};

struct Measurement {
    std::string unit, type, metric;
    double value = 0;                           // NaN is stored as NULL and read back as NaN
    bool operator==(const Measurement&) const;  // NaN equals NaN here
};

struct ItemCounts {
    int64_t total = 0, done = 0;
    int64_t pending() const { return total - done; }
};

struct Artifact {
    std::string name;
    bool is_json = true;  // JSON text, else opaque bytes
    std::string data;     // the JSON text or the bytes
};

struct JobFilter {
    std::optional<JobKind> kind = std::nullopt;
    std::optional<JobState> state = std::nullopt;
    std::optional<std::string> model_hash = std::nullopt;
};

using Metrics = std::map<std::string, double>;

// ~/.cache/quantlens/jobs.sqlite (XDG_CACHE_HOME respected), or $QUANTLENS_STORE when set.
std::string default_store_path();
// The --store flag when given, else default_store_path().
std::string resolve_store_path(const std::string& flag);

class Store {
  public:
    // Opens (creating the file, its directory and the schema when absent) a job store.
    explicit Store(const std::string& path, StoreOptions options = {});
    ~Store();
    Store(Store&&) noexcept;
    Store& operator=(Store&&) noexcept;
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    const std::string& path() const;

    // ---- jobs ----
    int64_t create_job(const NewJob& job);  // state queued
    Job get_job(int64_t id) const;          // throws Error when the id does not exist
    // get_job, refused by name unless the job is of `kind` ("job 3 is a sweep job, not an
    // audit"): what a runner checks before it reads the job's parameters.
    Job get_job_of_kind(int64_t id, JobKind kind) const;
    std::optional<Job> find_job(int64_t id) const;
    std::vector<Job> list_jobs(const JobFilter& filter = {}) const;  // by id
    // Replaces the job's parameters (e.g. a sweep that learns its type list late).
    void set_params(int64_t id, const std::string& params_json);
    // Throws Error naming what changed when the given hashes differ from the job's (an empty
    // argument is not checked): "model changed on disk since job 3 started".
    void check_inputs(int64_t id, const std::string& model_hash,
                      const std::string& text_hash) const;

    // ---- lifecycle (the process that runs the job) ----
    // queued → running, owned by this process (pid, host, heartbeat); clears any request.
    void start(int64_t id);
    // Low-level transition with legality check (job.h); prefer the verbs below.
    void set_state(int64_t id, JobState to, const std::string& error = "");
    void finish(int64_t id);                          // running → done
    void fail(int64_t id, const std::string& error);  // running/queued → failed
    void update_progress(int64_t id, int64_t done, int64_t total, const std::string& message);
    void set_message(int64_t id, const std::string& message);
    void heartbeat(int64_t id);
    // Polled by a running job between items: true when a pause or cancel was requested (or
    // the job was removed). The job then stops and calls honour_stop().
    bool should_stop(int64_t id) const;
    // running → paused or cancelled, as requested; returns the new state.
    JobState honour_stop(int64_t id);

    // ---- requests (any process: CLI, web server) ----
    // A live running job gets a request that its process honours; a queued, paused or
    // interrupted job changes state at once. Returns the job afterwards.
    Job pause(int64_t id);
    Job cancel(int64_t id);
    // paused, failed or interrupted → queued (its runner then start()s it); throws Error for
    // a live running, done or cancelled job.
    Job resume(int64_t id);
    // Deletes the job and all of its rows. A live running job needs force (its process
    // would otherwise keep writing to a job that no longer exists).
    void remove(int64_t id, bool force = false);

    // ---- results ----
    void add_units(int64_t id, const std::vector<Unit>& units);  // existing names are kept
    std::vector<Unit> units(int64_t id) const;                   // in insertion order
    // Adds pending items (existing ones keep their status) and sets progress_total to the
    // number of items. Returns how many were new.
    int64_t add_work_items(int64_t id, const std::vector<WorkItem>& items);
    std::vector<WorkItem> pending_items(int64_t id) const;  // in insertion order
    std::vector<WorkItem> work_items(int64_t id) const;     // all, in insertion order
    ItemCounts item_counts(int64_t id) const;
    bool is_done(int64_t id, const std::string& unit, const std::string& type) const;
    // One transaction: the item's metrics are inserted, the item is marked done and the
    // job's progress and heartbeat advance. Returns false (and changes nothing) when the
    // item was already done. An item not added beforehand is recorded as done.
    bool record_item(int64_t id, const std::string& unit, const std::string& type,
                     const Metrics& metrics);
    // Every measurement of the job ordered by (unit, type, metric); empty filters match all.
    std::vector<Measurement> measurements(int64_t id, const std::string& type = "",
                                          const std::string& metric = "") const;

    void put_artifact(int64_t id, const Artifact& artifact);  // replaces one of that name
    std::optional<Artifact> get_artifact(int64_t id, const std::string& name) const;
    std::vector<std::string> artifact_names(int64_t id) const;

    // Runs fn inside one IMMEDIATE transaction holding the store's lock, so that several
    // calls (which nest as savepoints) commit together or not at all.
    void transaction(const std::function<void()>& fn);
    // Copies a job row as read from another store (merge, export): every field is kept but
    // the id (a new one is returned) and the owner (pid, host), which belonged to the other
    // store's process; a `running` job is imported as paused.
    int64_t import_job(const Job& job);

    struct Impl;

  private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace quantlens::jobs
