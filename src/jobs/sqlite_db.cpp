#include "jobs/sqlite_db.h"

#include <sqlite3.h>

#include <cmath>
#include <limits>

#include "core/error.h"

namespace quantlens::jobs::detail {

Db::Db(const std::string& path, int busy_timeout_ms)
    : path_(path), busy_timeout_ms_(busy_timeout_ms) {
    int rc =
        sqlite3_open_v2(path.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
        std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
        sqlite3_close(db_);
        db_ = nullptr;
        fail("{}: cannot open the job store: {}", path, msg);
    }
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, busy_timeout_ms);
}

Db::~Db() {
    for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
    sqlite3_close(db_);
}

void Db::raise(int rc, std::string_view what) const {
    const int primary = rc & 0xff;
    const std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    switch (primary) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
            fail("{}: the job store is locked by another process (waited {} ms while {})", path_,
                 busy_timeout_ms_, what);
        case SQLITE_NOTADB:
            fail("{}: not a job store: the file is not an SQLite database", path_);
        case SQLITE_CORRUPT:
            fail("{}: the job store is corrupt ({}) while {}", path_, msg, what);
        case SQLITE_FULL:
            fail("{}: disk full while {}", path_, what);
        case SQLITE_READONLY:
            fail("{}: the job store is read-only ({}) while {}", path_, msg, what);
        case SQLITE_CANTOPEN:
        case SQLITE_IOERR:
        case SQLITE_PERM:
            fail("{}: cannot read or write the job store ({}) while {}", path_, msg, what);
        default:
            fail("{}: SQLite error while {}: {}", path_, what, msg);
    }
}

void Db::exec(const char* sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
    sqlite3_free(err);
    if (rc != SQLITE_OK) raise(rc, sql);
}

sqlite3_stmt* Db::prepare(const char* sql) {
    auto it = cache_.find(sql);
    if (it != cache_.end()) return it->second;
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) raise(rc, "preparing a query");
    cache_.emplace(sql, stmt);
    return stmt;
}

int64_t Db::changes() const {
    return sqlite3_changes64(db_);
}
int64_t Db::last_insert_id() const {
    return sqlite3_last_insert_rowid(db_);
}

Stmt::Stmt(Db& db, const char* sql) : db_(db), stmt_(db.prepare(sql)) {}

Stmt::~Stmt() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
}

Stmt& Stmt::bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
}

Stmt& Stmt::bind(int i, double v) {
    if (std::isnan(v)) return bind_null(i);
    sqlite3_bind_double(stmt_, i, v);
    return *this;
}

Stmt& Stmt::bind(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
}

Stmt& Stmt::bind_blob(int i, std::string_view bytes) {
    sqlite3_bind_blob(stmt_, i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
    return *this;
}

Stmt& Stmt::bind_null(int i) {
    sqlite3_bind_null(stmt_, i);
    return *this;
}

bool Stmt::step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    db_.raise(rc, "running a query");
}

void Stmt::run() {
    while (step()) {
    }
}

bool Stmt::is_null(int col) const {
    return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
}

int64_t Stmt::i64(int col) const {
    return sqlite3_column_int64(stmt_, col);
}

double Stmt::f64(int col) const {
    if (is_null(col)) return std::numeric_limits<double>::quiet_NaN();
    return sqlite3_column_double(stmt_, col);
}

std::string Stmt::text(int col) const {
    const auto* p = sqlite3_column_text(stmt_, col);
    if (!p) return {};
    return std::string(reinterpret_cast<const char*>(p),
                       static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
}

std::string Stmt::blob(int col) const {
    const void* p = sqlite3_column_blob(stmt_, col);
    if (!p) return {};
    return std::string(static_cast<const char*>(p),
                       static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
}

Transaction::Transaction(Db& db) : db_(db), depth_(db.transaction_depth) {
    db_.exec(depth_ == 0 ? "BEGIN IMMEDIATE" : "SAVEPOINT ql_nested");
    ++db_.transaction_depth;
}

void Transaction::commit() {
    db_.exec(depth_ == 0 ? "COMMIT" : "RELEASE ql_nested");
    done_ = true;
    --db_.transaction_depth;
}

Transaction::~Transaction() {
    if (done_) return;
    // Errors while rolling back are ignored: the exception that got us here says more.
    if (depth_ == 0) {
        sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
    } else {
        sqlite3_exec(db_.handle(), "ROLLBACK TO ql_nested; RELEASE ql_nested", nullptr, nullptr,
                     nullptr);
    }
    --db_.transaction_depth;
}

}  // namespace quantlens::jobs::detail
