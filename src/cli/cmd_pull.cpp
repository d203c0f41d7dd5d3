// `quantlens pull ORG/NAME`: download a model from the Hugging Face Hub into the local store
// (laid out like the Hugging Face cache), resumable and verified; see src/hub/pull.h.
#include <memory>

#include <fmt/format.h>

#include "cli/command.h"
#include "hub/pull.h"

QL_COMMAND(pull, quantlens::hub::PullOptions,
           "Download a model from the Hugging Face Hub into the local store") {
    cmd.add_option("REPO", o->repo_id, "Repository id, ORG/NAME")->required();
    cmd.add_option("--revision", o->revision, "Branch, tag or commit")->capture_default_str();
    cmd.add_option("--include", o->include,
                   "Only files matching this glob, e.g. '*Q4_K_M.gguf' (repeatable; default: "
                   "config, tokenizer and *.safetensors)")
        ->expected(1)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    cmd.add_option("--token", o->token,
                   "Hugging Face token (default: $HF_TOKEN, then the file `huggingface-cli "
                   "login` wrote); prefer those, a command-line token shows in `ps`");
    cmd.add_option("--endpoint", o->endpoint,
                   "Hub URL (default: $HF_ENDPOINT or https://huggingface.co)");
    cmd.add_option("--cache-dir", o->cache_dir,
                   "Local store (default: $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub)");
    cmd.add_option("--jobs,-j", o->jobs, "Files downloaded at once")->capture_default_str();
    return [o] {
        const quantlens::hub::PullResult r = quantlens::hub::pull(*o);
        fmt::print("{} @ {}: {} files, {:.1f} MB ({:.1f} MB downloaded now, {} already present)\n",
                   o->repo_id, r.commit.substr(0, 12), r.files.size(), r.bytes_total / 1e6,
                   r.bytes_fetched / 1e6, r.files_already_present);
        fmt::print("{}\n", r.snapshot_dir);
        return 0;
    };
}
