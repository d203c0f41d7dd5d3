// Opening a job store (schema, WAL) and the job lifecycle: create, read, state transitions,
// progress, liveness of the owning process, and user requests (pause, cancel, resume, rm).
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "jobs/runner.h"
#include "jobs/store_impl.h"

namespace quantlens::jobs {

namespace detail {
double now_seconds() {
    using namespace std::chrono;
    return duration<double>(system_clock::now().time_since_epoch()).count();
}
}  // namespace detail

using detail::now_seconds;
using detail::Stmt;
using detail::Transaction;

namespace {

// 'QLJB' marks our files, so a random SQLite database is not mistaken for a store.
constexpr int64_t kApplicationId = 0x514C4A42;
constexpr int64_t kSchemaVersion = 1;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS jobs(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  params TEXT NOT NULL DEFAULT '{}',
  model TEXT NOT NULL DEFAULT '',
  model_hash TEXT NOT NULL DEFAULT '',
  text_hash TEXT NOT NULL DEFAULT '',
  command TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL,
  requested TEXT NOT NULL DEFAULT '',
  progress_done INTEGER NOT NULL DEFAULT 0,
  progress_total INTEGER NOT NULL DEFAULT 0,
  message TEXT NOT NULL DEFAULT '',
  created REAL NOT NULL,
  started REAL NOT NULL DEFAULT 0,
  updated REAL NOT NULL,
  finished REAL NOT NULL DEFAULT 0,
  elapsed_prior REAL NOT NULL DEFAULT 0,  -- seconds of running before the current run
  run_started REAL NOT NULL DEFAULT 0,    -- start of the current run (state = running)
  error TEXT NOT NULL DEFAULT '',
  pid INTEGER NOT NULL DEFAULT 0,
  pid_start INTEGER NOT NULL DEFAULT 0,   -- process start time, so a reused pid is not alive
  host TEXT NOT NULL DEFAULT '',
  heartbeat REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS units(
  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  layer INTEGER NOT NULL,
  role TEXT NOT NULL,
  n_params INTEGER NOT NULL,
  extra TEXT NOT NULL,
  PRIMARY KEY(job_id, name));
CREATE TABLE IF NOT EXISTS work_items(
  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  unit TEXT NOT NULL,
  type TEXT NOT NULL,
  status TEXT NOT NULL CHECK(status IN ('pending', 'done')),
  done_at REAL,
  PRIMARY KEY(job_id, unit, type));
CREATE INDEX IF NOT EXISTS work_items_by_status ON work_items(job_id, status);
CREATE TABLE IF NOT EXISTS measurements(
  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  unit TEXT NOT NULL,
  type TEXT NOT NULL,
  metric TEXT NOT NULL,
  value REAL,
  UNIQUE(job_id, unit, type, metric));
CREATE TABLE IF NOT EXISTS artifacts(
  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  format TEXT NOT NULL CHECK(format IN ('json', 'blob')),
  data BLOB NOT NULL,
  updated REAL NOT NULL,
  PRIMARY KEY(job_id, name));
)sql";

constexpr const char* kJobColumns =
    "id, kind, params, model, model_hash, text_hash, command, state, requested, progress_done, "
    "progress_total, message, created, started, updated, finished, elapsed_prior, run_started, "
    "error, pid, pid_start, host, heartbeat";

std::string this_host() {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
    return buf;
}

// Start time of a process in clock ticks since boot (/proc/PID/stat field 22); 0 when
// unknown; -1 when the process is gone or a zombie.
int64_t process_start_time(int64_t pid) {
    std::ifstream in(fmt::format("/proc/{}/stat", pid));
    if (!in) return -1;
    std::string line;
    std::getline(in, line);
    const size_t close = line.rfind(')');  // the command name may contain spaces
    if (close == std::string::npos) return 0;
    std::istringstream rest(line.substr(close + 1));
    std::string state;
    rest >> state;
    if (state == "Z" || state == "X") return -1;
    std::string field;
    for (int i = 4; i < 22 && rest >> field; ++i) {
    }
    int64_t start = 0;
    rest >> start;
    return start;
}

bool pid_alive(int64_t pid, int64_t recorded_start) {
    if (pid <= 0) return false;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return false;
    const int64_t start = process_start_time(pid);
    if (start < 0) return false;
    return recorded_start <= 0 || start == 0 || start == recorded_start;
}

struct Row {
    Job job;
    double elapsed_prior = 0, run_started = 0;
    int64_t pid_start = 0;
};

Row read_row(const Stmt& s, const StoreOptions& options) {
    Row r;
    Job& j = r.job;
    j.id = s.i64(0);
    j.kind = parse_kind(s.text(1)).value_or(JobKind::sweep);
    j.params = s.text(2);
    j.model = s.text(3);
    j.model_hash = s.text(4);
    j.text_hash = s.text(5);
    j.command = s.text(6);
    j.state = parse_state(s.text(7)).value_or(JobState::failed);
    j.requested = parse_request(s.text(8)).value_or(StopRequest::none);
    j.progress_done = s.i64(9);
    j.progress_total = s.i64(10);
    j.message = s.text(11);
    j.created = s.f64(12);
    j.started = s.f64(13);
    j.updated = s.f64(14);
    j.finished = s.f64(15);
    r.elapsed_prior = s.f64(16);
    r.run_started = s.f64(17);
    j.error = s.text(18);
    j.pid = s.i64(19);
    r.pid_start = s.i64(20);
    j.host = s.text(21);
    j.heartbeat = s.f64(22);

    j.elapsed = r.elapsed_prior;
    if (j.state == JobState::running) {
        const bool alive = j.host == this_host()
                               ? pid_alive(j.pid, r.pid_start)
                               : now_seconds() - j.heartbeat < options.stale_after_s;
        j.interrupted = !alive;
        // An interrupted run ended at its last sign of life.
        const double end = alive ? now_seconds() : std::max(j.heartbeat, r.run_started);
        j.elapsed += std::max(0.0, end - r.run_started);
    }
    return r;
}

void ensure_parent_dir(const std::string& path) {
    const auto parent = std::filesystem::path(path).parent_path();
    if (parent.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    QL_CHECK(!ec, "{}: cannot create the job store's directory: {}", path, ec.message());
}

}  // namespace

std::string default_store_path() {
    if (const char* env = std::getenv("QUANTLENS_STORE"); env && *env) return env;
    if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
        return std::string(xdg) + "/quantlens/jobs.sqlite";
    const char* home = std::getenv("HOME");
    QL_CHECK(home && *home, "no job store path: set --store, QUANTLENS_STORE or HOME");
    return std::string(home) + "/.cache/quantlens/jobs.sqlite";
}

std::string resolve_store_path(const std::string& flag) {
    return flag.empty() ? default_store_path() : flag;
}

Store::Store(const std::string& path, StoreOptions options) {
    QL_CHECK(!path.empty(), "job store: empty path");
    QL_CHECK(!std::filesystem::is_directory(path), "{}: is a directory, not a job store file",
             path);
    QL_CHECK(options.create || std::filesystem::exists(path),
             "{}: no job store here (the file does not exist)", path);
    ensure_parent_dir(path);
    impl_ = std::make_unique<Impl>(path, options);
    auto& db = impl_->db;
    int64_t app_id = 0, version = 0, tables = 0;
    {
        Stmt s(db, "PRAGMA application_id");
        if (s.step()) app_id = s.i64(0);
    }
    {
        Stmt s(db, "PRAGMA user_version");
        if (s.step()) version = s.i64(0);
    }
    {
        Stmt s(db, "SELECT count(*) FROM sqlite_master");
        if (s.step()) tables = s.i64(0);
    }
    QL_CHECK(app_id == kApplicationId || (app_id == 0 && tables == 0),
             "{}: an SQLite database, but not a quantlens job store (application_id {:#x})", path,
             app_id);
    QL_CHECK(version <= kSchemaVersion,
             "{}: job store schema version {} is newer than this quantlens understands ({})", path,
             version, kSchemaVersion);
    db.exec("PRAGMA journal_mode=WAL");
    db.exec("PRAGMA synchronous=NORMAL");
    db.exec("PRAGMA foreign_keys=ON");
    if (version < kSchemaVersion) {
        // Another process may be creating it at the same moment: IF NOT EXISTS makes it idempotent.
        Transaction t(db);
        db.exec(kSchema);
        db.exec(fmt::format("PRAGMA application_id={}", kApplicationId).c_str());
        db.exec(fmt::format("PRAGMA user_version={}", kSchemaVersion).c_str());
        t.commit();
    }
}

Store::~Store() = default;
Store::Store(Store&&) noexcept = default;
Store& Store::operator=(Store&&) noexcept = default;

const std::string& Store::path() const {
    return impl_->db.path();
}

void Store::Impl::require_job(int64_t id) const {
    Stmt s(db, "SELECT 1 FROM jobs WHERE id=?");
    s.bind(1, id);
    QL_CHECK(s.step(), "{}: job {} does not exist", db.path(), id);
}

Job Store::Impl::read_job(int64_t id) const {
    static const std::string sql = fmt::format("SELECT {} FROM jobs WHERE id=?", kJobColumns);
    Stmt s(db, sql.c_str());
    s.bind(1, id);
    QL_CHECK(s.step(), "{}: job {} does not exist", db.path(), id);
    return read_row(s, options).job;
}

int64_t Store::create_job(const NewJob& job) {
    std::lock_guard lock(impl_->mutex);
    const double now = now_seconds();
    Stmt s(impl_->db,
           "INSERT INTO jobs(kind, params, model, model_hash, text_hash, command, state, "
           "created, updated) VALUES(?,?,?,?,?,?,'queued',?,?)");
    s.bind(1, kind_name(job.kind)).bind(2, job.params.empty() ? "{}" : job.params);
    s.bind(3, job.model).bind(4, job.model_hash).bind(5, job.text_hash).bind(6, job.command);
    s.bind(7, now).bind(8, now).run();
    return impl_->db.last_insert_id();
}

int64_t Store::import_job(const Job& job) {
    std::lock_guard lock(impl_->mutex);
    const JobState state = job.state == JobState::running ? JobState::paused : job.state;
    Stmt s(impl_->db,
           "INSERT INTO jobs(kind, params, model, model_hash, text_hash, command, state, "
           "progress_done, progress_total, message, created, started, updated, finished, "
           "elapsed_prior, error) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    s.bind(1, kind_name(job.kind)).bind(2, job.params).bind(3, job.model);
    s.bind(4, job.model_hash).bind(5, job.text_hash).bind(6, job.command);
    s.bind(7, state_name(state)).bind(8, job.progress_done).bind(9, job.progress_total);
    s.bind(10, job.message).bind(11, job.created).bind(12, job.started);
    s.bind(13, job.updated > 0 ? job.updated : now_seconds()).bind(14, job.finished);
    s.bind(15, job.elapsed).bind(16, job.error).run();
    return impl_->db.last_insert_id();
}

Job Store::get_job(int64_t id) const {
    std::lock_guard lock(impl_->mutex);
    return impl_->read_job(id);
}

Job Store::get_job_of_kind(int64_t id, JobKind kind) const {
    Job job = get_job(id);
    const std::string_view want = kind_name(kind);
    const bool vowel = want.find_first_of("aeiou") == 0;
    QL_CHECK(job.kind == kind, "job {} is a {} job, not {} {}", id, kind_name(job.kind),
             vowel ? "an" : "a", want);
    return job;
}

std::optional<Job> Store::find_job(int64_t id) const {
    std::lock_guard lock(impl_->mutex);
    Stmt s(impl_->db, "SELECT 1 FROM jobs WHERE id=?");
    s.bind(1, id);
    if (!s.step()) return std::nullopt;
    return impl_->read_job(id);
}

std::vector<Job> Store::list_jobs(const JobFilter& filter) const {
    std::lock_guard lock(impl_->mutex);
    static const std::string sql = fmt::format(
        "SELECT {} FROM jobs WHERE (?1 IS NULL OR kind=?1) AND (?2 IS NULL OR state=?2) AND "
        "(?3 IS NULL OR model_hash=?3) ORDER BY id",
        kJobColumns);
    Stmt s(impl_->db, sql.c_str());
    if (filter.kind) s.bind(1, kind_name(*filter.kind));
    if (filter.state) s.bind(2, state_name(*filter.state));
    if (filter.model_hash) s.bind(3, *filter.model_hash);
    std::vector<Job> out;
    while (s.step()) out.push_back(read_row(s, impl_->options).job);
    return out;
}

void Store::set_params(int64_t id, const std::string& params_json) {
    std::lock_guard lock(impl_->mutex);
    Stmt s(impl_->db, "UPDATE jobs SET params=?, updated=? WHERE id=?");
    s.bind(1, params_json).bind(2, now_seconds()).bind(3, id).run();
    QL_CHECK(impl_->db.changes() == 1, "{}: job {} does not exist", path(), id);
}

void Store::check_inputs(int64_t id, const std::string& model_hash,
                         const std::string& text_hash) const {
    const Job job = get_job(id);
    QL_CHECK(model_hash.empty() || job.model_hash == model_hash,
             "{}: job {}: the model '{}' changed on disk since the job started (hash {}, now {})",
             path(), id, job.model, job.model_hash, model_hash);
    QL_CHECK(text_hash.empty() || job.text_hash == text_hash,
             "{}: job {}: the evaluation text changed since the job started (hash {}, now {})",
             path(), id, job.text_hash, text_hash);
}

// ---- transitions ----

namespace {

// Moves `job` to `to` (legality already checked), maintaining owner, timing and request.
void write_transition(detail::Db& db, const Job& job, JobState to, const std::string& error) {
    const double now = now_seconds();
    const bool leaving_run = job.state == JobState::running && to != JobState::running;
    const bool final_state =
        to == JobState::done || to == JobState::failed || to == JobState::cancelled;
    if (to == JobState::running) {
        const int64_t pid = getpid();
        Stmt s(db,
               "UPDATE jobs SET state='running', requested='', pid=?, pid_start=?, host=?, "
               "heartbeat=?, run_started=?, started=CASE WHEN started>0 THEN started ELSE ? END, "
               "finished=0, error='', updated=? WHERE id=?");
        s.bind(1, pid).bind(2, std::max<int64_t>(0, process_start_time(pid)));
        s.bind(3, this_host()).bind(4, now).bind(5, now).bind(6, now).bind(7, now);
        s.bind(8, job.id).run();
        return;
    }
    Stmt s(db,
           "UPDATE jobs SET state=?, requested='', elapsed_prior=?, run_started=0, "
           "pid=CASE WHEN ?3 THEN 0 ELSE pid END, host=CASE WHEN ?3 THEN '' ELSE host END, "
           "finished=?, error=?, updated=? WHERE id=?");
    s.bind(1, state_name(to)).bind(2, job.elapsed).bind(3, leaving_run ? 1 : 0);
    s.bind(4, final_state ? now : 0.0).bind(5, to == JobState::failed ? error : "");
    s.bind(6, now).bind(7, job.id).run();
}

bool transition_allowed(const Job& job, JobState to) {
    // The process of an interrupted job is gone: it can be requeued (resumed) or stopped.
    if (job.interrupted)
        return to == JobState::queued || to == JobState::paused || to == JobState::cancelled ||
               to == JobState::failed;
    return is_legal_transition(job.state, to);
}

}  // namespace

void Store::set_state(int64_t id, JobState to, const std::string& error) {
    std::lock_guard lock(impl_->mutex);
    Transaction t(impl_->db);
    const Job job = impl_->read_job(id);
    QL_CHECK(transition_allowed(job, to), "{}: job {} is {}; it cannot become {}", path(), id,
             job.status(), state_name(to));
    write_transition(impl_->db, job, to, error);
    t.commit();
}

void Store::start(int64_t id) {
    std::lock_guard lock(impl_->mutex);
    Transaction t(impl_->db);
    const Job job = impl_->read_job(id);
    QL_CHECK(job.state == JobState::queued, "{}: job {} is {}; only a queued job can start", path(),
             id, job.status());
    write_transition(impl_->db, job, JobState::running, "");
    t.commit();
}

void Store::finish(int64_t id) {
    set_state(id, JobState::done);
}
void Store::fail(int64_t id, const std::string& error) {
    set_state(id, JobState::failed, error.empty() ? "failed" : error);
}

void Store::update_progress(int64_t id, int64_t done, int64_t total, const std::string& message) {
    std::lock_guard lock(impl_->mutex);
    const double now = now_seconds();
    Stmt s(impl_->db,
           "UPDATE jobs SET progress_done=?, progress_total=?, message=?, heartbeat=?, "
           "updated=? WHERE id=?");
    s.bind(1, done).bind(2, total).bind(3, message).bind(4, now).bind(5, now).bind(6, id).run();
    QL_CHECK(impl_->db.changes() == 1, "{}: job {} does not exist", path(), id);
}

void Store::set_message(int64_t id, const std::string& message) {
    std::lock_guard lock(impl_->mutex);
    const double now = now_seconds();
    Stmt s(impl_->db, "UPDATE jobs SET message=?, heartbeat=?, updated=? WHERE id=?");
    s.bind(1, message).bind(2, now).bind(3, now).bind(4, id).run();
    QL_CHECK(impl_->db.changes() == 1, "{}: job {} does not exist", path(), id);
}

void Store::heartbeat(int64_t id) {
    std::lock_guard lock(impl_->mutex);
    Stmt s(impl_->db, "UPDATE jobs SET heartbeat=? WHERE id=?");
    s.bind(1, now_seconds()).bind(2, id).run();
    QL_CHECK(impl_->db.changes() == 1, "{}: job {} does not exist", path(), id);
}

bool Store::should_stop(int64_t id) const {
    std::lock_guard lock(impl_->mutex);
    Stmt s(impl_->db, "SELECT requested, state FROM jobs WHERE id=?");
    s.bind(1, id);
    if (!s.step()) return true;  // removed under us: nothing left to work for
    return stop_signal_received() || !s.text(0).empty() || s.text(1) != "running";
}

JobState Store::honour_stop(int64_t id) {
    std::lock_guard lock(impl_->mutex);
    Transaction t(impl_->db);
    Stmt s(impl_->db, "SELECT 1 FROM jobs WHERE id=?");
    s.bind(1, id);
    if (!s.step()) return JobState::cancelled;
    const Job job = impl_->read_job(id);
    if (job.state != JobState::running) return job.state;  // already moved by a request
    const JobState to =
        job.requested == StopRequest::cancel ? JobState::cancelled : JobState::paused;
    write_transition(impl_->db, job, to, "");
    t.commit();
    return to;
}

namespace {
void set_request(detail::Db& db, int64_t id, StopRequest request) {
    Stmt s(db, "UPDATE jobs SET requested=?, updated=? WHERE id=?");
    s.bind(1, request_name(request)).bind(2, now_seconds()).bind(3, id).run();
}
}  // namespace

Job Store::pause(int64_t id) {
    return impl_->change_job(id, [&](const Job& job) {
        if (job.state == JobState::running && !job.interrupted) {
            if (job.requested == StopRequest::none) set_request(impl_->db, id, StopRequest::pause);
        } else if (job.state == JobState::queued || job.interrupted) {
            write_transition(impl_->db, job, JobState::paused, "");
        } else {
            QL_CHECK(job.state == JobState::paused, "{}: job {} is {}; there is nothing to pause",
                     path(), id, job.status());
        }
    });
}

Job Store::cancel(int64_t id) {
    return impl_->change_job(id, [&](const Job& job) {
        if (job.state == JobState::running && !job.interrupted) {
            set_request(impl_->db, id, StopRequest::cancel);
        } else if (job.state != JobState::cancelled) {
            QL_CHECK(job.state != JobState::done, "{}: job {} is already done; nothing to cancel",
                     path(), id);
            write_transition(impl_->db, job, JobState::cancelled, "");
        }
    });
}

Job Store::resume(int64_t id) {
    return impl_->change_job(id, [&](const Job& job) {
        if (job.state == JobState::running && !job.interrupted) {
            // Taking back a pause that its process has not acted on yet.
            QL_CHECK(job.requested == StopRequest::pause,
                     "{}: job {} is already running (pid {} on {})", path(), id, job.pid, job.host);
            set_request(impl_->db, id, StopRequest::none);
        } else if (job.state != JobState::queued) {
            QL_CHECK(!is_terminal(job.state), "{}: job {} is {}; it cannot be resumed", path(), id,
                     job.status());
            write_transition(impl_->db, job, JobState::queued, "");
        }
    });
}

void Store::remove(int64_t id, bool force) {
    std::lock_guard lock(impl_->mutex);
    Transaction t(impl_->db);
    const Job job = impl_->read_job(id);
    QL_CHECK(force || job.state != JobState::running || job.interrupted,
             "{}: job {} is running (pid {} on {}); cancel it first, or force the removal", path(),
             id, job.pid, job.host);
    for (const char* sql :
         {"DELETE FROM measurements WHERE job_id=?", "DELETE FROM work_items WHERE job_id=?",
          "DELETE FROM units WHERE job_id=?", "DELETE FROM artifacts WHERE job_id=?",
          "DELETE FROM jobs WHERE id=?"}) {
        Stmt s(impl_->db, sql);
        s.bind(1, id).run();
    }
    t.commit();
}

void Store::transaction(const std::function<void()>& fn) {
    std::lock_guard lock(impl_->mutex);
    Transaction t(impl_->db);
    fn();
    t.commit();
}

}  // namespace quantlens::jobs
