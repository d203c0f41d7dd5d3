// Input Hessians of the linear layers, H = Σ xᵀx over every input row x (one token's input
// to the weight), collected from the engine's hook while the model runs over text. This is
// the second-order statistic GPTQ (quant/gptq.h) rounds against, and with held-out text the
// exact quadratic form of a weight change's output error:
//   ‖X(W − Ŵ)ᵀ‖²_F = Σ_rows (w − ŵ) H (w − ŵ)ᵀ.
//
// Which inputs count follows ActivationCollector (activation_stats.h): every LinearInput
// event of a weight named blk.*, plus the output head when include_output (the head's input
// is the final-norm output; run_hessians runs the head for it); stacked expert weights get
// one H per expert (the tokens routed to it) when include_experts, else they are skipped.
// Sums are in double; the upper triangle is accumulated (OpenBLAS dsyrk) and mirrored on
// read. Weights sharing an input (q/k/v, gate/up) reuse one product per forward batch.
// Memory: n_cols² doubles per matrix (4.7 MB for n = 768; 1.6 GB for 14336).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "engine/sweep_backend.h"

namespace quantlens {

class Model;

class HessianCollector {
  public:
    explicit HessianCollector(bool include_output = true, bool include_experts = false)
        : include_output_(include_output), include_experts_(include_experts) {}

    // The hook to install with Engine::set_hook; it refers to this collector.
    EngineHook hook();
    void on_event(const HookEvent& event);

    // Adds Σ xᵀx reduced elsewhere (the GPU's, run_hessians_gpu) over `tokens` rows of the
    // input of `tensor` at `layer` (−1: the head) for matrix `expert` of a stacked weight (−1:
    // a plain one): `upper` is n_cols × n_cols row-major with the upper triangle (i ≤ j)
    // valid. Inputs on_event would not keep are skipped.
    void add_sum(const std::string& tensor, int layer, int64_t n_cols, int64_t tokens,
                 const double* upper, int expert = -1);
    bool include_experts() const { return include_experts_; }

    bool empty() const { return mats_.empty(); }
    // (weight name, expert or −1) of every matrix seen, sorted.
    std::vector<std::pair<std::string, int>> matrices() const;
    bool has(const std::string& tensor, int expert = -1) const;
    int64_t n_cols(const std::string& tensor, int expert = -1) const;  // 0 when absent
    int64_t tokens(const std::string& tensor, int expert = -1) const;  // rows summed
    // Σ xᵀx as a full symmetric n_cols × n_cols row-major matrix. Throws Error when absent.
    std::vector<double> hessian(const std::string& tensor, int expert = -1) const;

  private:
    struct Matrix {
        int64_t n_cols = 0, tokens = 0;
        std::vector<double> upper;  // (n_cols, n_cols), upper triangle valid
    };
    bool include_output_, include_experts_;
    std::map<std::pair<std::string, int>, Matrix> mats_;
    // The last input's xᵀx, reused while the same rows come again (weights sharing an input).
    std::vector<float> last_input_;
    int64_t last_rows_ = 0, last_cols_ = 0;
    std::vector<double> last_xtx_;  // (last_cols_, last_cols_), upper triangle
    std::vector<double> scratch_;   // input rows converted to double
};

// Runs `engine` (its hook is replaced for the duration and cleared after) over the chunks,
// `batch` chunks per forward pass, every layer and (for the head's input) the head, with
// the collector installed. Positions are not skipped: every token of every chunk is a row,
// as in run_calibration.
void run_hessians(Engine& engine, const EvalChunks& chunks, HessianCollector& collector,
                  int64_t batch = 4);

// run_hessians on the GPU (a CUDA build): the model's forward pass on the CUDA engine with F16
// weights and activations, every input's Σ xᵀx reduced on the device (engine/cuda/cuda_stats.h:
// F32 products of one batch, F64 sums), weights sharing an input computed once, then handed to
// `collector` (add_sum). The sums stay on the device until the end; when the model's inputs do
// not fit in `device_budget_bytes` (0: the GPU's free memory less a reserve) at once, the text
// is run once per group of inputs that does. The inputs are those of run_hessians, rounded to
// F16 as the GPU engine's matmuls take them; a mixture of experts' routed rows give one H per
// expert, as on the CPU, when the collector includes experts (the GPU routes in F16, so a token
// near a tie may reach another expert than on the CPU). Throws Error naming `what` (the
// command) in a build without CUDA or with no usable GPU.
void run_hessians_gpu(const Model& model, const EvalChunks& chunks, HessianCollector& collector,
                      int64_t batch = 4, const std::string& what = "--gptq --gpu",
                      int64_t device_budget_bytes = 0);

}  // namespace quantlens
