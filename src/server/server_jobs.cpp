// Jobs routes: listing, report data, server-sent progress events, pause/resume/cancel, and
// starting a job as a child process of this executable with validated arguments.
#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "analysis/studies/audit.h"
#include "core/error.h"
#include "core/ggml_type.h"
#include "hub/env.h"
#include "jobs/job_options.h"
#include "report/report_data.h"
#include "server/activity.h"
#include "server/server_impl.h"

namespace quantlens::server {

namespace fs = std::filesystem;

namespace {

bool is_word(const std::string& s) {
    if (s.empty() || s.size() > 128 || s[0] == '-') return false;
    for (char c : s)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-' &&
            c != ':')
            return false;
    return true;
}

int64_t job_id_of(const httplib::Request& req) {
    try {
        return std::stoll(req.matches[1]);
    } catch (const std::exception&) {
        return 0;
    }
}

// The job an /api/jobs/ID route names; when there is none, replies 404 and returns nullopt.
std::optional<jobs::Job> job_or_404(const jobs::Store& store, const httplib::Request& req,
                                    httplib::Response& res) {
    const int64_t id = job_id_of(req);
    auto job = store.find_job(id);
    if (!job) reply_error(res, 404, fmt::format("no job {}", id));
    return job;
}

std::string value_text(const nlohmann::json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
    if (v.is_number()) return fmt::format("{}", v.get<double>());
    fail("expected a string or a number, got {}", v.dump());
}

// One part of a Hub repository id: letters, digits, '.', '_', '-', not starting with '.' or '-'.
bool is_repo_part(const std::string& s) {
    if (s.empty() || s.size() > 96 || s[0] == '-' || s[0] == '.') return false;
    for (char c : s)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-')
            return false;
    return true;
}

// `pull` is not a job-table kind (it records no job and reads no model): its form is a
// repository id, an optional revision and an optional token. The token reaches the child
// only as HF_TOKEN in its environment (hub/env.h reads it), never on its argv, so it is in
// no job store, log line or `ps` listing; messages about it never quote it.
nlohmann::json pull_kind_json() {
    return {{"target", "repo"}, {"job_option", false}, {"options", {{"revision", "word"}}}};
}

bool pull_argv(const nlohmann::json& body, const std::string& exe, std::vector<std::string>* argv,
               std::vector<std::string>* env, std::string* why) {
    for (const auto& [key, value] : body.items())
        if (key != "kind" && key != "repo" && key != "token" && key != "options") {
            *why = fmt::format(
                "'{}' is not accepted for a pull job (it takes 'repo', 'token', "
                "'options')",
                key.substr(0, 64));
            return false;
        }
    const std::string repo = body.value("repo", std::string());
    const size_t slash = repo.find('/');
    if (!body.contains("repo") || !body["repo"].is_string() || slash == std::string::npos ||
        !is_repo_part(repo.substr(0, slash)) || !is_repo_part(repo.substr(slash + 1))) {
        *why = "'repo' must be a Hub repository id ORG/NAME (letters, digits, '.', '_', '-')";
        return false;
    }
    // Without -q: the progress bar's lines in the log are what GET /api/processes reports.
    *argv = {exe, "pull", repo};
    const nlohmann::json opts =
        body.contains("options") ? body["options"] : nlohmann::json::object();
    if (!opts.is_object()) {
        *why = "'options' must be an object";
        return false;
    }
    for (const auto& [name, value] : opts.items()) {
        if (name != "revision") {
            *why = fmt::format("option '{}' is not accepted for a pull job", name.substr(0, 64));
            return false;
        }
        if (!value.is_string() || !is_word(value.get<std::string>())) {
            *why = "--revision: expected a word of letters, digits, '.', '_', '-', ':'";
            return false;
        }
        argv->insert(argv->end(), {"--revision", value.get<std::string>()});
    }
    if (body.contains("token")) {
        bool ok = body["token"].is_string() && body["token"].get<std::string>().size() <= 1024;
        if (ok)
            for (char c : body["token"].get<std::string>())
                ok &= c > ' ' && c < 127;  // printable, no spaces: nothing to break a header
        if (!ok) {
            *why = "'token' must be a string of at most 1024 printable characters, no spaces";
            return false;
        }
        if (!body["token"].get<std::string>().empty())
            env->push_back("HF_TOKEN=" + body["token"].get<std::string>());
    }
    return true;
}

}  // namespace

nlohmann::json job_json(const jobs::Job& job) {
    nlohmann::json j = jobs::to_json(job);
    const double f = job.fraction();
    if (job.state == jobs::JobState::running && !job.interrupted && f > 0 && f < 1 &&
        job.started > 0 && job.updated > job.started)
        j["eta_s"] = (job.updated - job.started) * (1 - f) / f;
    else
        j["eta_s"] = nullptr;
    return j;
}

// The child's argv for a POST /api/jobs body, built only from jobs::job_kind_specs()'s web
// options; nullopt with `why` = "400 message" or "404 message" when the body is refused.
std::optional<std::vector<std::string>> Server::Impl::job_argv(const nlohmann::json& body,
                                                               std::string* why) const {
    auto refuse = [&](int status, const std::string& message) {
        *why = std::to_string(status) + " " + message;
        return std::nullopt;
    };
    if (!body.contains("kind") || !body["kind"].is_string())
        return refuse(400,
                      "'kind' must be a string: one of audit, calibrate, compare, eval, plan, "
                      "pull, quantize, sweep, verify");
    const std::string kind = body["kind"];
    const jobs::JobKindSpec* spec = jobs::find_job_kind_spec(kind);
    if (!spec)
        return refuse(400,
                      fmt::format("'kind' must be one of audit, calibrate, compare, eval, plan, "
                                  "pull, quantize, sweep, verify; got '{}'",
                                  kind.substr(0, 64)));
    std::vector<std::string> argv = {options.job_exe, "-q", kind};
    auto add_target = [&](const char* how, const std::string& value) {
        if (*how) argv.push_back(how);
        argv.push_back(value);
    };
    std::string reason;
    if (body.contains("model")) {
        if (!spec->model_arg)
            return refuse(
                400, fmt::format("'model' is not accepted for a {} job (it takes 'job')", kind));
        if (!body["model"].is_string()) return refuse(400, "'model' must be a path string");
        const auto path = paths->resolve(body["model"].get<std::string>(), &reason);
        if (!path) return refuse(404, "model: " + reason);
        if (spec->model_label == "zoo") {
            // The zoo names models, texts and quantized files itself: each must be a path the
            // server would accept in a request, so a zoo cannot reach outside the roots.
            Zoo zoo;
            try {
                zoo = load_zoo(path->string());
            } catch (const Error& e) {
                return refuse(400, std::string("zoo: ") + e.what());
            }
            for (const auto& m : zoo.models) {
                std::vector<std::pair<const char*, std::string>> named = {{"fp", m.fp},
                                                                          {"text", m.text}};
                for (const auto& q : m.quants) named.push_back({"quants", q});
                for (const auto& [field, file] : named)
                    if (!paths->resolve(file, &reason))
                        return refuse(404, fmt::format("zoo {}: model '{}': {} '{}': {}",
                                                       path->string(), m.name.substr(0, 64), field,
                                                       file.substr(0, 256), reason));
            }
        }
        add_target(spec->model_arg, path->string());
    } else if (spec->model_required) {
        return refuse(400, fmt::format("'model' is required for kind '{}'{}", kind,
                                       spec->model_label == "zoo" ? " (the zoo file)" : ""));
    }
    if (spec->second_path) {
        const std::string field = spec->second_path;
        if (!body.contains(field) || !body[field].is_string())
            return refuse(400, fmt::format("'{}' (a path) is required for a {} job", field, kind));
        const auto path = paths->resolve(body[field].get<std::string>(), &reason);
        if (!path) return refuse(404, field + ": " + reason);
        argv.push_back(path->string());
    } else if (body.contains("quant")) {
        return refuse(400, fmt::format("'quant' is not accepted for a {} job", kind));
    }
    if (body.contains("job")) {
        if (!spec->job_arg)
            return refuse(
                400, fmt::format("'job' is not accepted for a {} job (it takes 'model')", kind));
        const auto& j = body["job"];
        if (!j.is_number_integer() || !store->find_job(j.get<int64_t>()))
            return refuse(400, "'job' must be the id of an existing job");
        add_target(spec->job_arg, std::to_string(j.get<int64_t>()));
    } else if (spec->job_required) {
        return refuse(400, fmt::format("'job' is required for a {} job", kind));
    }
    // "force": true replaces existing outputs; the app sends it only after the user confirmed
    // the 409 that named them.
    if (body.contains("force") && !body["force"].is_boolean())
        return refuse(400, "'force' must be true or false");
    const bool force = body.value("force", false);
    if (force && !spec->find("force"))
        return refuse(400, "'force' is not accepted for a " + kind + " job");
    const nlohmann::json opts =
        body.contains("options") ? body["options"] : nlohmann::json::object();
    if (!opts.is_object()) return refuse(400, "'options' must be an object");
    for (const auto& [name, value] : opts.items()) {
        const jobs::JobOption* o = spec->find(name);
        if (!o || !o->web)
            return refuse(400, fmt::format("option '{}' is not accepted for a {} job",
                                           name.substr(0, 64), kind));
        const std::string flag = "--" + name;
        switch (o->value) {
            case jobs::OptionValue::flag:
                if (!value.is_boolean()) return refuse(400, flag + ": expected true or false");
                if (value.get<bool>()) argv.push_back(flag);
                break;
            case jobs::OptionValue::number:
                if (!value.is_number() || value.get<double>() < 0 || value.get<double>() > 1e12)
                    return refuse(400, flag + ": expected a non-negative number");
                argv.insert(argv.end(), {flag, value_text(value)});
                break;
            case jobs::OptionValue::word:
                if (!value.is_string() || !is_word(value.get<std::string>()))
                    return refuse(
                        400, flag + ": expected a word of letters, digits, '.', '_', '-', ':'");
                argv.insert(argv.end(), {flag, value.get<std::string>()});
                break;
            case jobs::OptionValue::words:
            case jobs::OptionValue::types: {
                const bool types = o->value == jobs::OptionValue::types;
                if (!value.is_string())
                    return refuse(400, flag + (types ? ": expected a comma-separated type list"
                                                     : ": expected a comma-separated list"));
                const std::string list = value;
                if (list.size() > 1024) return refuse(400, flag + ": list too long");
                size_t start = 0;
                while (start <= list.size()) {
                    const size_t comma = std::min(list.find(',', start), list.size());
                    const std::string item = list.substr(start, comma - start);
                    if (types ? !ggml_type_from_name(item).has_value() : !is_word(item))
                        return refuse(400, fmt::format("{}: {} '{}'", flag,
                                                       types ? "unknown type" : "bad item",
                                                       item.substr(0, 64)));
                    start = comma + 1;
                }
                argv.insert(argv.end(), {flag, list});
                break;
            }
            case jobs::OptionValue::path: {
                if (!value.is_string()) return refuse(400, flag + ": expected a path string");
                const auto path = paths->resolve(value.get<std::string>(), &reason);
                if (!path) return refuse(404, flag + ": " + reason);
                argv.insert(argv.end(), {flag, path->string()});
                break;
            }
            case jobs::OptionValue::out_path: {
                // Outputs go to the server's own folder only: a plain name, no folder, so no
                // job can write beside (or over) a model.
                if (!value.is_string() || !is_safe_name(value.get<std::string>()))
                    return refuse(400, flag +
                                           ": expected a plain file name (letters, digits, '.', "
                                           "'_', '-'), written into the server's output folder " +
                                           options.output_dir);
                const fs::path out = fs::path(options.output_dir) / value.get<std::string>();
                std::error_code ec;
                if (!force && fs::symlink_status(out, ec).type() != fs::file_type::not_found)
                    return refuse(409, flag + ": " + out.string() +
                                           " exists; send \"force\": true to replace it");
                argv.insert(argv.end(), {flag, out.string()});
                break;
            }
        }
    }
    if (force) argv.push_back("--force");
    // verify writes its candidates (recipes and presets quantized) into a working folder of
    // its own, reused when their inputs are unchanged: keep it inside the output folder.
    if (spec->find("out-dir"))
        argv.insert(argv.end(), {"--out-dir", options.output_dir + "/verify"});
    // Only commands that record a job take a store; eval and quantize refuse --store.
    if (spec->takes_store()) argv.insert(argv.end(), {"--store", options.store_path});
    return argv;
}

void Server::Impl::remember_process(pid_t pid, Process p) {
    std::lock_guard<std::mutex> lock(processes_mutex);
    p.seq = ++process_seq;
    processes[pid] = std::move(p);
    while (processes.size() > kMaxProcesses) {
        // Forget the oldest finished one; all running: the oldest.
        auto victim = processes.end();
        for (auto it = processes.begin(); it != processes.end(); ++it) {
            const bool done = children.exit_code(it->first).has_value();
            if (done && (victim == processes.end() || it->second.seq < victim->second.seq))
                victim = it;
        }
        if (victim == processes.end())
            victim = std::min_element(
                processes.begin(), processes.end(),
                [](const auto& a, const auto& b) { return a.second.seq < b.second.seq; });
        processes.erase(victim);
    }
}

nlohmann::json Server::Impl::process_json(pid_t pid, const Process& p) {
    const auto code = children.exit_code(pid);
    nlohmann::json j = {{"pid", pid},
                        {"kind", p.kind},
                        {"running", !code.has_value()},
                        {"exit_code", code ? nlohmann::json(*code) : nlohmann::json(nullptr)},
                        {"output", tail_of_file(p.log)},
                        {"seq", p.seq}};  // start order (pids may be reused)
    if (p.kind == "pull") {
        j["repo"] = p.repo;
        j["revision"] = p.revision;
        // Read from more of the log than the tail shown: a failing pull prints its error
        // last, after the final progress line.
        const auto progress = last_pull_progress(tail_of_file(p.log, 64 * 1024), p.repo);
        if (progress)
            j["progress"] = {
                {"done", progress->done},
                {"total", progress->total},
                {"unit", progress->unit},
                {"fraction", progress->total > 0
                                 ? static_cast<double>(progress->done) / progress->total
                                 : 0.0}};
        else
            j["progress"] = nullptr;
    }
    return j;
}

nlohmann::json Server::Impl::job_reply(const jobs::Job& job) {
    nlohmann::json j = job_json(job);
    std::lock_guard<std::mutex> lock(processes_mutex);
    j["has_output"] = job_logs.count(job.id) > 0;  // GET /api/jobs/:id/output has its output
    return j;
}

void Server::Impl::job_routes() {
    http.Get("/api/jobs", [this](const httplib::Request&, httplib::Response& res) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& job : store->list_jobs()) out.push_back(job_reply(job));
        reply_json(res, {{"jobs", out}});
    });
    http.Get(R"(/api/jobs/(\d{1,18}))",
             [this](const httplib::Request& req, httplib::Response& res) {
                 if (const auto job = job_or_404(*store, req, res))
                     reply_json(res, job_reply(*job));
             });
    http.Get(R"(/api/jobs/(\d{1,18})/report-data)",
             [this](const httplib::Request& req, httplib::Response& res) {
                 if (const auto job = job_or_404(*store, req, res))
                     reply_json(res, report::build_report_data(*store, job->id));
             });
    http.Get(R"(/api/jobs/(\d{1,18})/events)", [this](const httplib::Request& req,
                                                      httplib::Response& res) {
        const auto job = job_or_404(*store, req, res);
        if (!job) return;
        const int64_t id = job->id;
        if (open_streams.fetch_add(1) >= options.max_event_streams) {
            open_streams.fetch_sub(1);
            return reply_error(res, 503,
                               "too many open event streams; poll GET /api/jobs/:id instead");
        }
        res.set_header("X-Accel-Buffering", "no");
        // The provider runs on this connection's thread until it returns false or calls done();
        // a client that disconnects makes the write fail, which ends it (and frees the slot).
        auto last = std::make_shared<std::string>();
        auto released = std::make_shared<std::atomic<bool>>(false);
        auto release = [this, released] {
            if (!released->exchange(true)) open_streams.fetch_sub(1);
        };
        res.set_chunked_content_provider(
            "text/event-stream",
            [this, id, last, release](size_t, httplib::DataSink& sink) {
                auto next_poll = std::chrono::steady_clock::now();
                auto last_beat = next_poll;
                while (!stopping) {
                    if (!sink.is_writable()) return false;
                    const auto job = store->find_job(id);
                    if (!job) {
                        sink.write("event: gone\ndata: {}\n\n", 22);
                        sink.done();
                        return true;
                    }
                    std::string payload = job_reply(*job).dump();
                    if (payload != *last) {
                        const std::string msg = "data: " + payload + "\n\n";
                        if (!sink.write(msg.data(), msg.size())) return false;
                        *last = std::move(payload);
                        last_beat = std::chrono::steady_clock::now();
                    } else if (std::chrono::steady_clock::now() - last_beat >
                               std::chrono::seconds(10)) {
                        if (!sink.write(": keep-alive\n\n", 14))
                            return false;  // detects a gone client
                        last_beat = std::chrono::steady_clock::now();
                    }
                    if (jobs::is_terminal(job->state) || job->state == jobs::JobState::failed) {
                        sink.done();
                        return true;
                    }
                    next_poll +=
                        std::chrono::milliseconds(static_cast<int>(options.event_poll_s * 1000));
                    std::this_thread::sleep_until(next_poll);
                }
                return false;
            },
            [release](bool) { release(); });
    });

    for (const char* verb : {"pause", "cancel"}) {
        const std::string v = verb;
        http.Post(R"(/api/jobs/(\d{1,18})/)" + v, [this, v](const httplib::Request& req,
                                                            httplib::Response& res) {
            const auto job = job_or_404(*store, req, res);
            if (!job) return;
            const int64_t id = job->id;
            try {
                reply_json(res, job_reply(v == "pause" ? store->pause(id) : store->cancel(id)));
            } catch (const Error& e) {
                reply_error(res, 409, e.what());
            }
        });
    }
    // Resuming needs a process to run the job again: `quantlens jobs resume ID`, which
    // changes the state itself (or refuses, e.g. for a done job: that becomes a 409).
    http.Post(R"(/api/jobs/(\d{1,18})/resume)", [this](const httplib::Request& req,
                                                       httplib::Response& res) {
        const auto before = job_or_404(*store, req, res);
        if (!before) return;
        const int64_t id = before->id;
        fs::create_directories(options.log_dir);
        const std::string log =
            fmt::format("{}/job-{}-resume-{}.log", options.log_dir, id,
                        std::chrono::system_clock::now().time_since_epoch().count());
        const pid_t pid = children.spawn({options.job_exe, "-q", "jobs", "resume",
                                          std::to_string(id), "--store", options.store_path},
                                         log);
        {
            std::lock_guard<std::mutex> lock(processes_mutex);
            job_logs[id] = log;
        }
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < deadline) {
            if (const auto code = children.exit_code(pid); code && *code != 0)
                return reply_error(res, 409,
                                   fmt::format("cannot resume job {}: {}", id, tail_of_file(log)));
            const auto now = store->find_job(id);
            if (!now) return reply_error(res, 404, fmt::format("no job {}", id));
            if (now->status() != before->status() || now->requested != before->requested ||
                children.exit_code(pid))
                return reply_json(res, {{"pid", pid}, {"job", job_reply(*now)}, {"log", log}});
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        reply_json(res, {{"pid", pid}, {"job", job_reply(*store->find_job(id))}, {"log", log}},
                   202);
    });

    http.Get("/api/job-kinds", [](const httplib::Request&, httplib::Response& res) {
        nlohmann::json kinds = jobs::job_kinds_json();
        kinds["pull"] = pull_kind_json();
        reply_json(res, kinds);
    });

    http.Post("/api/jobs", [this](const httplib::Request& req, httplib::Response& res) {
        const auto body = parse_body(req, res);
        if (!body) return;
        std::string why;
        std::optional<std::vector<std::string>> argv;
        std::vector<std::string> env;
        const bool pull = body->value("kind", nlohmann::json()) == "pull";
        if (pull) {
            argv.emplace();
            if (!pull_argv(*body, options.job_exe, &*argv, &env, &why))
                return reply_error(res, 400, why);
        } else {
            argv = job_argv(*body, &why);
            if (!argv) return reply_error(res, std::stoi(why.substr(0, 3)), why.substr(4));
        }
        // Said again here so a token can never reach a reply, even through a child that
        // printed its environment.
        const std::string token =
            pull && body->contains("token") ? (*body)["token"].get<std::string>() : "";
        const std::string kind = (*body)["kind"];
        fs::create_directories(options.log_dir);
        const auto stamp = std::chrono::system_clock::now().time_since_epoch().count();
        const std::string log = fmt::format("{}/{}-{}.log", options.log_dir, kind, stamp);
        const pid_t pid = children.spawn(*argv, log, env);
        Process process{kind, log, "", "", 0};
        if (pull) {
            process.repo = (*body)["repo"];
            process.revision = "main";
            if (body->contains("options") && (*body)["options"].contains("revision"))
                process.revision = (*body)["options"]["revision"];
        }
        // A child that records a job creates it in the store; find it by pid so the app can
        // follow it. The others (eval, quantize, verify) answer with their exit and output.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < deadline) {
            for (const auto& job : store->list_jobs())
                if (job.pid == pid) {
                    {
                        std::lock_guard<std::mutex> lock(processes_mutex);
                        job_logs[job.id] = log;
                    }
                    return reply_json(res, {{"pid", pid}, {"job", job_reply(job)}, {"log", log}},
                                      202);
                }
            if (const auto code = children.exit_code(pid)) {
                remember_process(pid, process);
                const std::string tail = hub::redact_token(tail_of_file(log), token);
                if (*code != 0)
                    return reply_json(
                        res,
                        {{"error", fmt::format("{} exited with code {}: {}", kind, *code, tail)},
                         {"pid", pid}},
                        422);
                return reply_json(
                    res, {{"pid", pid}, {"job", nullptr}, {"exit_code", 0}, {"output", tail}}, 200);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        remember_process(pid, process);
        reply_json(res, {{"pid", pid}, {"job", nullptr}, {"log", log}}, 202);
    });
    // A command started above that records no job: running, or its exit code and output;
    // a pull also its repository, revision and download progress.
    http.Get(R"(/api/processes/(\d{1,9}))",
             [this](const httplib::Request& req, httplib::Response& res) {
                 const auto pid = static_cast<pid_t>(job_id_of(req));
                 Process info;
                 {
                     std::lock_guard<std::mutex> lock(processes_mutex);
                     const auto it = processes.find(pid);
                     if (it == processes.end())
                         return reply_error(
                             res, 404, fmt::format("no process {} started by this server", pid));
                     info = it->second;
                 }
                 reply_json(res, process_json(pid, info));
             });
    // All of them, newest first (the app's list of commands and pulls survives a reload).
    http.Get("/api/processes", [this](const httplib::Request&, httplib::Response& res) {
        std::vector<std::pair<pid_t, Process>> list;
        {
            std::lock_guard<std::mutex> lock(processes_mutex);
            list.assign(processes.begin(), processes.end());
        }
        std::sort(list.begin(), list.end(),
                  [](const auto& a, const auto& b) { return a.second.seq > b.second.seq; });
        nlohmann::json out = nlohmann::json::array();
        for (const auto& [pid, p] : list) out.push_back(process_json(pid, p));
        reply_json(res, {{"processes", out}});
    });
    http.Get("/api/verified", [this](const httplib::Request&, httplib::Response& res) {
        reply_json(res, verified_recipes_json(*store));
    });
    // What the child that ran a job printed (compare's and audit's result tables).
    http.Get(R"(/api/jobs/(\d{1,18})/output)",
             [this](const httplib::Request& req, httplib::Response& res) {
                 const auto job = job_or_404(*store, req, res);
                 if (!job) return;
                 const int64_t id = job->id;
                 std::string log;
                 {
                     std::lock_guard<std::mutex> lock(processes_mutex);
                     const auto it = job_logs.find(id);
                     if (it != job_logs.end()) log = it->second;
                 }
                 if (log.empty())
                     return reply_error(
                         res, 404,
                         fmt::format("job {} was not started or resumed by this server, which "
                                     "keeps no output of it",
                                     id));
                 reply_json(res, {{"job", id}, {"output", tail_of_file(log, 16 * 1024)}});
             });
}

}  // namespace quantlens::server
