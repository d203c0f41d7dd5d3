// `quantlens serve`: a local web app over the job store. Binds 127.0.0.1 by default and
// serves, from the binary itself (web assets embedded by src/report):
//   GET  /                          the single-page app (web/app.html)
//   GET  /assets/<file>             app.js, report.js, style.css, plotly.min.js
//   GET  /api/health                {"ok": true, "version"}
//   GET  /api/job-kinds             the options the app may set per job kind
//                                   (jobs::job_kinds_json, from src/jobs/job_options.h,
//                                   plus "pull": target "repo", option revision)
//   GET  /api/types                 quantization types by bpw with the sweep's defaults,
//                                   presets, GPU support (server/catalog.h)
//   GET  /api/presets?model=P&presets=L  each preset's type per tensor of that model
//   GET  /api/jobs                  every job (jobs::to_json + "eta_s" + "has_output")
//   GET  /api/jobs/:id              one job; 404 when absent
//   GET  /api/jobs/:id/report-data  the report-data document (src/report/report_data.h)
//   GET  /api/jobs/:id/events       server-sent events: one `data: <job json>` per change,
//                                   ends when the job is done, failed or cancelled
//   GET  /api/jobs/:id/output       {"job", "output"}: the last 16 kB the child that ran (or
//                                   resumed) the job printed, e.g. compare's and audit's
//                                   tables; 404 for a job this server did not start
//   POST /api/jobs                  start sweep/calibrate/plan/quantize/verify/eval/compare/
//                                   audit as a child process of this executable with validated
//                                   options (compare: "quant" is the quantized GGUF; audit:
//                                   "model" is the zoo file, every path it names must lie
//                                   inside the allowed roots); an
//                                   `output` is a file name in the output folder (409 when it
//                                   exists, unless the body says "force": true, which the app
//                                   sends only after the user confirmed); verify's working
//                                   folder is <output folder>/verify. {"kind": "pull",
//                                   "repo": "ORG/NAME", "token"?, "options": {"revision"?}}
//                                   runs `pull`; its token reaches the child only as HF_TOKEN
//                                   and is kept nowhere. A command that fails within the
//                                   first seconds is a 422 {"error", "pid"}
//   GET  /api/processes[/:pid]      the commands started above that record no job (eval,
//                                   quantize, verify, pull), newest first, finished ones too
//                                   (the newest 256): running, exit code, output tail; a pull
//                                   also "repo", "revision" and "progress" {done, total, unit,
//                                   fraction} from its progress lines (null before the first).
//                                   Resuming a pull is starting it again: it continues its
//                                   partial files
//   GET  /api/verified              every recipe verified in the store (`verify --job` keeps
//                                   them in the sweep job's "verify" table) with size, bpw,
//                                   PPL, KLD mean/p99/p99.9/max, the prediction, the text
//   POST /api/jobs/:id/pause|cancel  through the store (409 for an illegal change)
//   POST /api/jobs/:id/resume        runs `quantlens jobs resume ID` as a child process
//   GET  /api/models?path=P         directory listing or tensor table, only under the allowed
//                                   roots (working directory, --models-dir, the output and
//                                   recipe folders); a model carries `inspect` (the document
//                                   of `quantlens inspect --json`, model/inspect_json.h)
//   POST /api/recipes               save a recipe (JSON/YAML) into --recipes-dir (409 when it
//                                   exists, unless "overwrite": true)
// Every error is JSON {"error": "..."} with a 4xx status for bad input (400 malformed, 403
// outside the roots or bad Host/Content-Type, 404 absent, 409 illegal state change, 413 too
// large, 503 too many event streams, 422 a started command that exited with an error). POSTs must
// be `Content-Type: application/json` and the Host header must name the bound address, so other web
// pages cannot drive the API (CSRF, DNS rebinding); only `allow_remote` lifts that check, for a
// wildcard bind. A path outside the allowed roots gets the same 404 as an absent one, and FIFOs and
// devices are never opened. Request fields of the wrong JSON type are 400s naming the field.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace quantlens::server {

struct ServerOptions {
    std::string host = "127.0.0.1";
    // Binding a wildcard address (0.0.0.0, ::) accepts any Host header only with this set
    // (`serve --allow-remote`); otherwise the Host check stays on and the app answers only
    // as localhost.
    bool allow_remote = false;
    int port = 8080;  // 0 = any free port (tests)
    std::string store_path;
    std::vector<std::string> model_roots;  // first one = base of relative paths; default: cwd
    std::string recipes_dir = "recipes";
    std::string job_exe = "/proc/self/exe";  // what POST /api/jobs runs
    std::string log_dir;                     // child logs; default: <store>.logs
    // The only folder jobs started over HTTP write into (their `output` option is a plain
    // file name in it, never replacing a file); default: <store>.outputs. It is readable
    // as a root too, so one job's output can be the next one's input.
    std::string output_dir;
    int threads = 16;
    // Each open event stream holds a worker thread for as long as its job runs; at most
    // threads / 2, so that the other half keeps answering (/api/health, the app's polls).
    int max_event_streams = 4;
    double event_poll_s = 0.2;
};

// One response of Server::handle.
struct HttpReply {
    int status = 0;
    std::string body;
};

class Server {
  public:
    explicit Server(ServerOptions options);  // opens the store; throws Error
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds the listening socket; throws Error ("127.0.0.1:8080 is already in use ...").
    // Returns the bound port.
    int bind();
    // Serves until stop() (from another thread or a signal handler's thread).
    void run();
    void stop();
    int port() const;
    // Serves one request without a socket (tests, fuzzing): the same checks, routes and error
    // replies as a connection, with Host 127.0.0.1 and the given Content-Type. Bytes of
    // `target` that cannot appear in a request line are percent-encoded first.
    HttpReply handle(const std::string& method, const std::string& target, const std::string& body,
                     const std::string& content_type = "application/json");

    struct Impl;

  private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace quantlens::server
