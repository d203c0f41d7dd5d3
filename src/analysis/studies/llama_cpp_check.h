// verify's second opinion: llama.cpp's own `llama-perplexity`, run on the same files with the
// same protocol, so its PPL and KLD can stand beside ours (`verify --llama-cpp [DIR]`).
//
// Protocol (what the tool is asked, in two runs):
//   base:      llama-perplexity -m BASE.gguf -f TEXT -c CTX --chunks N -t T
//                               --kl-divergence-base OUT_DIR/llama-cpp-base.kld
//   candidate: llama-perplexity -m CANDIDATE.gguf --kl-divergence-base (that file)
//                               --kl-divergence -c CTX --chunks N -t T
// The base is the verify base as a GGUF: the file itself when it is one, else an F16 GGUF
// written by our quantizer (llama.cpp's own protocol measures KLD against the F16 file). The
// candidate run reads the base's tokens from the .kld file, so both sides score the same
// windows. Each run's output goes to a log beside the files; a figure the summary lacks, or
// a run that fails, is an Error naming the log.
//
// The tool is found in DIR (DIR, DIR/bin, DIR/build/bin) when a DIR is given, else on PATH;
// verify refuses --llama-cpp by name when it is in neither place.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace quantlens {

// llama-perplexity's summary after --kl-divergence (fractions, not percent).
struct LlamaCppFigures {
    double ppl = 0, ppl_err = 0;
    double kld_mean = 0, kld_err = 0, kld_median = 0, kld_p99 = 0, kld_p999 = 0, kld_max = 0;
    double top1 = 0;  // "Same top p", as a fraction
    std::string log;  // the run's output file
};

// The executable path, or nullopt when it is not in `dir` (or, for an empty dir, on PATH).
std::optional<std::string> find_llama_perplexity(const std::string& dir);

// Reads the summary llama-perplexity prints ("Mean PPL(Q) : x ± e", "Mean    KLD: x ± e",
// "Median  KLD:", "99.0%   KLD:", "99.9%   KLD:", "Maximum KLD:", "Same top p: x ± e %").
// Throws Error naming `log_path` and the first missing line.
LlamaCppFigures parse_llama_perplexity_output(const std::string& text, const std::string& log_path);

class LlamaCppCheck {
  public:
    LlamaCppCheck(std::string tool, std::string out_dir, int64_t ctx, int64_t chunks);
    // Runs the base and keeps its logits for every candidate.
    void run_base(const std::string& base_gguf, const std::string& text);
    // One candidate against the base's logits; `name` names the log file.
    LlamaCppFigures run_candidate(const std::string& gguf, const std::string& name) const;
    const std::string& tool() const { return tool_; }

  private:
    std::string tool_, out_dir_, base_kld_;
    int64_t ctx_, chunks_;
};

nlohmann::json llama_cpp_json(const LlamaCppFigures& f);

}  // namespace quantlens
