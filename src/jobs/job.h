// What a job is: one long task (sweep, calibrate, eval, …) recorded in the job store so that
// it can be watched, paused, resumed after a crash, and read back by later commands and the
// web app. This header is the vocabulary (kinds, states, the Job row); store.h holds the
// operations.
//
// State machine (Store::set_state enforces it):
//
//   queued ──start──▶ running ──▶ done | failed | cancelled
//     │                 │  ▲
//     │         pause/cancel request, honoured by the runner between items
//     ▼                 ▼  │ resume (→ queued → running)
//   cancelled         paused
//
// plus: failed → queued (retry keeps every item already measured), and "interrupted": a job
// whose state is still `running` but whose process is gone (kill -9, power loss) — detected
// from its pid (same host) or a stale heartbeat (other hosts); it is reported as
// "interrupted" and can be resumed or cancelled.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace quantlens::jobs {

// Append-only: the names are stored in the database.
enum class JobKind { sweep, calibrate, eval, quantize, verify, compare, audit, plan };
enum class JobState { queued, running, paused, done, failed, cancelled };
// What a user asked a running job to do; the job's own process acts on it between items.
enum class StopRequest { none, pause, cancel };

std::string_view kind_name(JobKind kind);
std::string_view state_name(JobState state);
std::string_view request_name(StopRequest request);
std::optional<JobKind> parse_kind(std::string_view name);
std::optional<JobState> parse_state(std::string_view name);
std::optional<StopRequest> parse_request(std::string_view name);
// Every kind's (state's) name in enum order, comma-separated, for a refusal to list.
std::string kind_names();
std::string state_names();

// A terminal job never runs again (done, cancelled); failed can be retried.
bool is_terminal(JobState state);
// The legal edges of the state machine above (excluding the interrupted → queued edge,
// which depends on liveness and is checked by Store::resume).
bool is_legal_transition(JobState from, JobState to);

// Everything needed to create a job. Hashes identify the inputs so a resumed job can detect
// a model or text changed on disk since it started.
struct NewJob {
    JobKind kind = JobKind::sweep;
    std::string params = "{}";  // JSON object text: the options the job was started with
    std::string model;          // model path or name, for display
    std::string model_hash;     // content hash of the model files ("" when not applicable)
    std::string text_hash;      // content hash of the evaluation / calibration text
    std::string command;        // the command line that started it (shown by `jobs resume`)
};

// One row of the jobs table as read back, with liveness already evaluated. Times are Unix
// seconds (UTC) with sub-second precision; 0 means "not yet".
struct Job {
    int64_t id = 0;
    JobKind kind = JobKind::sweep;
    std::string params = "{}";
    std::string model, model_hash, text_hash, command;
    JobState state = JobState::queued;
    StopRequest requested = StopRequest::none;
    bool interrupted = false;  // state == running but its process is gone
    int64_t progress_done = 0, progress_total = 0;
    std::string message;  // latest progress message
    double created = 0, started = 0, updated = 0, finished = 0;
    double elapsed = 0;  // seconds spent running, summed over every run of the job
    std::string error;   // why it failed (state == failed)
    int64_t pid = 0;     // process running it (state == running)
    std::string host;    // host of that process
    double heartbeat = 0;

    // "interrupted" for an interrupted job, else the state's name.
    std::string_view status() const;
    // progress_done / progress_total in [0, 1]; 0 when the total is unknown.
    double fraction() const;
};

// The JSON form used by `jobs list/show --json` and the web app's API.
nlohmann::json to_json(const Job& job);

}  // namespace quantlens::jobs

namespace quantlens {
// An integer field of a job's params, or `fallback` when absent: anything but an integer
// that fits int64 is an Error naming the key (converting 1e40 would be undefined behaviour).
int64_t job_param_int(const nlohmann::json& params, const char* key, int64_t fallback);
}  // namespace quantlens

namespace quantlens::jobs {}  // namespace quantlens::jobs
