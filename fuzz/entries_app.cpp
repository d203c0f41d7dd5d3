// Fuzz entry points above the file formats (see entries.h): tokenizer, audit zoo, job
// params, a sweep job's stored mixes and the server's request handlers.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "analysis/studies/audit.h"
#include "analysis/studies/compare.h"
#include "analysis/studies/mixes.h"
#include "analysis/sweep/sweep.h"
#include "analysis/sweep/sweep_shard.h"
#include "core/error.h"
#include "engine/tokenizer.h"
#include "entries.h"
#include "entries_util.h"
#include "formats/gguf.h"
#include "jobs/job.h"
#include "jobs/store.h"
#include "server/server.h"

namespace quantlens::fuzz {

using namespace detail;

bool tokenizer_entry(const uint8_t* data, size_t size) {
    const std::string_view input = as_text(data, size);
    const size_t nul = input.find('\0');
    const std::string_view json = input.substr(0, nul);
    const std::string_view text = nul == std::string_view::npos ? "" : input.substr(nul + 1);
    const fs::path dir = clean_dir("tokenizer");
    write_file(dir / "tokenizer.json", json);
    try {
        const Tokenizer tok = Tokenizer::from_hf_json((dir / "tokenizer.json").string());
        for (const bool special : {false, true}) {
            try {
                const auto ids = tok.encode(text, false, special);
                for (const int32_t id : ids) QL_ASSERT(id >= 0 && id < tok.vocab_size());
                (void)tok.decode(ids);
            } catch (const Error&) {
            }
        }
        return true;
    } catch (const Error&) {
        return false;
    }
}

bool zoo_entry(const uint8_t* data, size_t size) {
    // The zoo's folder holds what the seeds name: a model folder, a text and a quant.
    static const fs::path dir = [] {
        const fs::path d = clean_dir("zoo");
        fs::create_directories(d / "model");
        write_file(d / "eval.txt", "some text\n");
        write_file(d / "model-Q4_K.gguf", "");
        return d;
    }();
    const fs::path path = dir / "zoo.yaml";
    write_file(path, as_text(data, size));
    try {
        const Zoo zoo = load_zoo(path.string());
        // The audit job stores the zoo as its params and reads it back from there.
        const Zoo again = Zoo::from_json(nlohmann::json::parse(zoo.to_json().dump()));
        QL_ASSERT(again.models.size() == zoo.models.size());
        for (size_t i = 0; i < zoo.models.size(); ++i) {
            const ZooModel &a = zoo.models[i], &b = again.models[i];
            QL_ASSERT(a.name == b.name && a.fp == b.fp && a.text == b.text && a.types == b.types &&
                      a.tokens == b.tokens && a.ctx == b.ctx && a.granularity == b.granularity &&
                      a.quants == b.quants);
        }
        return true;
    } catch (const Error&) {
        return false;
    }
}

bool params_entry(const uint8_t* data, size_t size) {
    jobs::Job job;
    job.params = std::string(as_text(data, size));
    // What `jobs show`, the server and report data do with any job, whatever its params.
    (void)jobs::to_json(job).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    try {
        (void)shard_of_params(job.params);
        const nlohmann::json j = nlohmann::json::parse(job.params, nullptr, false);
        if (j.is_discarded() || !j.is_object()) return false;
        // The readers of each job kind's params. They read what quantlens itself wrote, and
        // report a missing or mistyped key with nlohmann's exception (the CLI prints it);
        // anything else escaping them is a bug.
        for (const auto& read : std::initializer_list<void (*)(const nlohmann::json&)>{
                 [](const nlohmann::json& p) { (void)SweepOptions::from_json(p); },
                 [](const nlohmann::json& p) { (void)CompareOptions::from_json(p); },
                 [](const nlohmann::json& p) { (void)Zoo::from_json(p); }}) {
            try {
                read(j);
            } catch (const Error&) {
            } catch (const nlohmann::json::exception&) {
            }
        }
        return true;
    } catch (const Error&) {
        return false;
    }
}

bool mixes_entry(const uint8_t* data, size_t size) {
    try {
        const StoredMixes mixes = parse_stored_mixes(std::string(as_text(data, size)));
        // What a plan does with them: written back, read again, the same.
        if (parse_stored_mixes(stored_mixes_json(mixes)).size() != mixes.size())
            throw std::logic_error("stored mixes do not survive a round trip");
        return true;
    } catch (const Error&) {
        return false;
    }
}

bool server_entry(const uint8_t* data, size_t size) {
    // One server for the process, over a store holding one finished job and a model folder
    // with one small GGUF. Jobs never start: job_exe does not exist.
    static const std::unique_ptr<server::Server> srv = [] {
        const fs::path dir = clean_dir("server");
        fs::create_directories(dir / "models");
        GgufWriter w;
        w.add_kv("general.architecture", GgufValue::string("llama"));
        static const std::vector<uint8_t> zeros(64 * 4 * sizeof(float));
        w.add_tensor("blk.0.attn_q.weight", {64, 4}, GgmlType::F32, zeros);
        w.write((dir / "models" / "tiny.gguf").string());
        const std::string store = (dir / "jobs.db").string();
        {
            jobs::Store s(store);
            jobs::NewJob nj;
            nj.params = R"({"model": "tiny.gguf", "types": ["Q4_K"]})";
            nj.model = "tiny.gguf";
            const int64_t id = s.create_job(nj);
            s.set_state(id, jobs::JobState::running);
            s.finish(id);
        }
        server::ServerOptions o;
        o.store_path = store;
        o.model_roots = {(dir / "models").string()};
        o.recipes_dir = (dir / "recipes").string();
        o.job_exe = (dir / "no-such-quantlens").string();
        o.log_dir = (dir / "logs").string();
        o.threads = 4;  // the fewest the server accepts (event streams get at most half)
        o.max_event_streams = 2;
        o.event_poll_s = 0.01;
        return std::make_unique<server::Server>(o);
    }();
    // Saved recipes and logs would make a reply depend on the inputs before it.
    std::error_code ec;
    fs::remove_all(scratch() / "server" / "recipes", ec);
    fs::remove_all(scratch() / "server" / "logs", ec);

    const std::string_view input = as_text(data, size);
    const size_t nl = input.find('\n');
    const std::string_view line = input.substr(0, nl);
    const size_t sp = line.find(' ');
    if (sp == std::string_view::npos) return false;
    const std::string method(line.substr(0, sp));
    const std::string target(line.substr(sp + 1));
    const std::string body(nl == std::string_view::npos ? "" : input.substr(nl + 1));
    // httplib answers unknown methods itself; ours are GET and POST (HEAD and OPTIONS too).
    const server::HttpReply r = srv->handle(method, target, body);
    QL_ASSERT(r.status >= 200 && r.status < 500);
    return r.status < 300;
}

}  // namespace quantlens::fuzz
