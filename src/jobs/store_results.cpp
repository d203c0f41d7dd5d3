// A job's results: units, work items (what remains), measurements and artifacts. The item
// protocol lives here: record_item() is the one place where measurements are written, in the
// same transaction that marks the item done.
#include <cmath>

#include "core/error.h"
#include "jobs/store_impl.h"

namespace quantlens::jobs {

using detail::now_seconds;
using detail::Stmt;
using detail::Transaction;

bool Measurement::operator==(const Measurement& o) const {
    const bool same_value = value == o.value || (std::isnan(value) && std::isnan(o.value));
    return unit == o.unit && type == o.type && metric == o.metric && same_value;
}

void Store::add_units(int64_t id, const std::vector<Unit>& units) {
    std::lock_guard lock(impl_->mutex);
    Transaction t(impl_->db);
    impl_->require_job(id);
    for (const Unit& u : units) {
        QL_CHECK(!u.name.empty(), "{}: job {}: a unit with an empty name", path(), id);
        Stmt s(impl_->db,
               "INSERT INTO units(job_id, name, layer, role, n_params, extra) VALUES(?,?,?,?,?,?) "
               "ON CONFLICT DO NOTHING");
        s.bind(1, id).bind(2, u.name).bind(3, u.layer).bind(4, u.role).bind(5, u.n_params);
        s.bind(6, u.extra.empty() ? "{}" : u.extra).run();
    }
    t.commit();
}

std::vector<Unit> Store::units(int64_t id) const {
    std::lock_guard lock(impl_->mutex);
    impl_->require_job(id);
    Stmt s(impl_->db,
           "SELECT name, layer, role, n_params, extra FROM units WHERE job_id=? ORDER BY rowid");
    s.bind(1, id);
    std::vector<Unit> out;
    while (s.step()) out.push_back({s.text(0), s.i64(1), s.text(2), s.i64(3), s.text(4)});
    return out;
}

int64_t Store::add_work_items(int64_t id, const std::vector<WorkItem>& items) {
    std::lock_guard lock(impl_->mutex);
    Transaction t(impl_->db);
    impl_->require_job(id);
    int64_t added = 0;
    for (const WorkItem& item : items) {
        Stmt s(impl_->db,
               "INSERT INTO work_items(job_id, unit, type, status) VALUES(?,?,?,'pending') "
               "ON CONFLICT DO NOTHING");
        s.bind(1, id).bind(2, item.unit).bind(3, item.type).run();
        added += impl_->db.changes();
    }
    Stmt s(impl_->db,
           "UPDATE jobs SET progress_total=(SELECT count(*) FROM work_items WHERE job_id=?1), "
           "progress_done=(SELECT count(*) FROM work_items WHERE job_id=?1 AND status='done'), "
           "updated=?2 WHERE id=?1");
    s.bind(1, id).bind(2, now_seconds()).run();
    t.commit();
    return added;
}

namespace {
std::vector<WorkItem> read_items(detail::Db& db, int64_t id, bool pending_only) {
    Stmt s(db,
           "SELECT unit, type FROM work_items WHERE job_id=? AND (? = 0 OR status='pending') "
           "ORDER BY rowid");
    s.bind(1, id).bind(2, pending_only ? 1 : 0);
    std::vector<WorkItem> out;
    while (s.step()) out.push_back({s.text(0), s.text(1)});
    return out;
}
}  // namespace

std::vector<WorkItem> Store::pending_items(int64_t id) const {
    std::lock_guard lock(impl_->mutex);
    impl_->require_job(id);
    return read_items(impl_->db, id, true);
}

std::vector<WorkItem> Store::work_items(int64_t id) const {
    std::lock_guard lock(impl_->mutex);
    impl_->require_job(id);
    return read_items(impl_->db, id, false);
}

ItemCounts Store::item_counts(int64_t id) const {
    std::lock_guard lock(impl_->mutex);
    impl_->require_job(id);
    Stmt s(impl_->db,
           "SELECT count(*), coalesce(sum(status='done'), 0) FROM work_items WHERE job_id=?");
    s.bind(1, id);
    s.step();
    return {s.i64(0), s.i64(1)};
}

bool Store::is_done(int64_t id, const std::string& unit, const std::string& type) const {
    std::lock_guard lock(impl_->mutex);
    Stmt s(impl_->db, "SELECT status FROM work_items WHERE job_id=? AND unit=? AND type=?");
    s.bind(1, id).bind(2, unit).bind(3, type);
    return s.step() && s.text(0) == "done";
}

bool Store::record_item(int64_t id, const std::string& unit, const std::string& type,
                        const Metrics& metrics) {
    std::lock_guard lock(impl_->mutex);
    auto& db = impl_->db;
    Transaction t(db);
    impl_->require_job(id);
    bool was_pending = false;
    {
        Stmt s(db, "SELECT status FROM work_items WHERE job_id=? AND unit=? AND type=?");
        s.bind(1, id).bind(2, unit).bind(3, type);
        if (s.step()) {
            if (s.text(0) == "done") return false;  // measured before: keep the first result
            was_pending = true;
        }
    }
    const double now = now_seconds();
    for (const auto& [metric, value] : metrics) {
        Stmt s(db, "INSERT INTO measurements(job_id, unit, type, metric, value) VALUES(?,?,?,?,?)");
        s.bind(1, id).bind(2, unit).bind(3, type).bind(4, metric).bind(5, value).run();
    }
    {
        Stmt s(db,
               "INSERT INTO work_items(job_id, unit, type, status, done_at) "
               "VALUES(?,?,?,'done',?) ON CONFLICT DO UPDATE SET status='done', "
               "done_at=excluded.done_at");
        s.bind(1, id).bind(2, unit).bind(3, type).bind(4, now).run();
    }
    {
        Stmt s(db,
               "UPDATE jobs SET progress_done=progress_done+?, heartbeat=?, updated=? "
               "WHERE id=?");
        s.bind(1, was_pending ? 1 : 0).bind(2, now).bind(3, now).bind(4, id).run();
    }
    t.commit();
    return true;
}

std::vector<Measurement> Store::measurements(int64_t id, const std::string& type,
                                             const std::string& metric) const {
    std::lock_guard lock(impl_->mutex);
    impl_->require_job(id);
    Stmt s(impl_->db,
           "SELECT unit, type, metric, value FROM measurements WHERE job_id=? "
           "AND (?2 = '' OR type=?2) AND (?3 = '' OR metric=?3) ORDER BY unit, type, metric");
    s.bind(1, id).bind(2, type).bind(3, metric);
    std::vector<Measurement> out;
    while (s.step()) out.push_back({s.text(0), s.text(1), s.text(2), s.f64(3)});
    return out;
}

void Store::put_artifact(int64_t id, const Artifact& a) {
    std::lock_guard lock(impl_->mutex);
    Transaction t(impl_->db);
    impl_->require_job(id);
    QL_CHECK(!a.name.empty(), "{}: job {}: an artifact with an empty name", path(), id);
    Stmt s(impl_->db,
           "INSERT INTO artifacts(job_id, name, format, data, updated) VALUES(?,?,?,?,?) "
           "ON CONFLICT DO UPDATE SET format=excluded.format, data=excluded.data, "
           "updated=excluded.updated");
    s.bind(1, id).bind(2, a.name).bind(3, a.is_json ? "json" : "blob");
    if (a.is_json)
        s.bind(4, a.data);
    else
        s.bind_blob(4, a.data);
    s.bind(5, now_seconds()).run();
    t.commit();
}

std::optional<Artifact> Store::get_artifact(int64_t id, const std::string& name) const {
    std::lock_guard lock(impl_->mutex);
    impl_->require_job(id);
    Stmt s(impl_->db, "SELECT format, data FROM artifacts WHERE job_id=? AND name=?");
    s.bind(1, id).bind(2, name);
    if (!s.step()) return std::nullopt;
    const bool json = s.text(0) == "json";
    return Artifact{name, json, json ? s.text(1) : s.blob(1)};
}

std::vector<std::string> Store::artifact_names(int64_t id) const {
    std::lock_guard lock(impl_->mutex);
    impl_->require_job(id);
    Stmt s(impl_->db, "SELECT name FROM artifacts WHERE job_id=? ORDER BY name");
    s.bind(1, id);
    std::vector<std::string> out;
    while (s.step()) out.push_back(s.text(0));
    return out;
}

}  // namespace quantlens::jobs
