// A thin RAII layer over the SQLite C API for the job store (internal to src/jobs): one
// connection, cached prepared statements, nestable IMMEDIATE transactions (savepoints inside),
// and SQLite result codes turned into quantlens::Error messages that name the file and say
// what is wrong in the user's terms (locked, not a database, corrupt, disk full).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

struct sqlite3;
struct sqlite3_stmt;

namespace quantlens::jobs::detail {

class Db {
  public:
    Db(const std::string& path, int busy_timeout_ms);
    ~Db();
    Db(const Db&) = delete;
    Db& operator=(const Db&) = delete;

    const std::string& path() const { return path_; }
    sqlite3* handle() const { return db_; }
    void exec(const char* sql);              // statements without results
    sqlite3_stmt* prepare(const char* sql);  // cached by the SQL text's address
    // Throws Error for a failed call; `what` says what the store was doing.
    [[noreturn]] void raise(int rc, std::string_view what) const;
    int64_t changes() const;
    int64_t last_insert_id() const;

    int transaction_depth = 0;

  private:
    std::string path_;
    int busy_timeout_ms_;
    sqlite3* db_ = nullptr;
    std::unordered_map<const char*, sqlite3_stmt*> cache_;
};

// A prepared statement in use: binds by 1-based index, steps, reads columns; resets on scope
// exit so the cached statement can be reused.
class Stmt {
  public:
    Stmt(Db& db, const char* sql);
    ~Stmt();
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;

    Stmt& bind(int i, int64_t v);
    Stmt& bind(int i, int v) { return bind(i, static_cast<int64_t>(v)); }
    Stmt& bind(int i, double v);  // NaN is bound as NULL (SQLite would do the same)
    Stmt& bind(int i, std::string_view v);
    Stmt& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
    Stmt& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
    Stmt& bind_blob(int i, std::string_view bytes);
    Stmt& bind_null(int i);

    bool step();  // true while a row is available
    void run();   // steps a statement that returns no rows

    bool is_null(int col) const;
    int64_t i64(int col) const;
    double f64(int col) const;  // NULL → NaN
    std::string text(int col) const;
    std::string blob(int col) const;

  private:
    Db& db_;
    sqlite3_stmt* stmt_;
};

// BEGIN IMMEDIATE at depth 0 (the write lock is taken up front, so the busy timeout applies
// and no deadlock between readers upgrading is possible), a SAVEPOINT when nested. Rolls back
// unless commit() was called.
class Transaction {
  public:
    explicit Transaction(Db& db);
    ~Transaction();
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    void commit();

  private:
    Db& db_;
    int depth_;
    bool done_ = false;
};

}  // namespace quantlens::jobs::detail
