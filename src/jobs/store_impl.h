// Internals shared by the store's translation units (store.cpp: opening, schema, job
// lifecycle; store_results.cpp: units, items, measurements, artifacts). Not a public header.
#pragma once

#include <mutex>
#include <string>

#include "jobs/sqlite_db.h"
#include "jobs/store.h"

namespace quantlens::jobs {

struct Store::Impl {
    Impl(const std::string& path, StoreOptions options)
        : options(options), db(path, options.busy_timeout_ms) {}

    StoreOptions options;
    mutable detail::Db db;
    // Serializes callers from several threads of one process: a connection's transaction is
    // shared by every statement on it, so two threads must not interleave theirs.
    mutable std::recursive_mutex mutex;

    // Throws Error "{path}: job {id} does not exist".
    void require_job(int64_t id) const;
    Job read_job(int64_t id) const;  // throws when missing

    // Reads job ID and hands it to change(job) inside one transaction under the mutex;
    // returns the job as it is once that is committed (pause, cancel and resume).
    template <typename Change>
    Job change_job(int64_t id, Change change) {
        std::lock_guard lock(mutex);
        detail::Transaction t(db);
        change(read_job(id));
        t.commit();
        return read_job(id);
    }
};

namespace detail {
double now_seconds();
}  // namespace detail

}  // namespace quantlens::jobs
