// The names of the measurements a sweep records for each (unit, type) item in the job store
// (Store::record_item), and which plan, placement, the report and the web app read back.
// The names are stored in databases and shown in the app: append, never rename.
#pragma once

namespace quantlens::metric {

// Against the full-precision model, over the scored tokens of the sweep's text:
inline constexpr const char* kld_mean = "kld_mean";          // mean KLD(full ‖ quantized)
inline constexpr const char* kld_max = "kld_max";            // its largest token
inline constexpr const char* ppl = "ppl";                    // perplexity with the item applied
inline constexpr const char* ppl_base = "ppl_base";          // perplexity of the full model
inline constexpr const char* ppl_delta = "ppl_delta";        // ppl - ppl_base
inline constexpr const char* ln_ppl_ratio = "ln_ppl_ratio";  // ln(ppl / ppl_base)
inline constexpr const char* top1_agree = "top1_agree";      // share of same top-1 tokens
inline constexpr const char* rms_dp = "rms_dp";              // RMS change of the token's prob
inline constexpr const char* act_mse = "act_mse";            // final hidden state's MSE
// The weights themselves (no evaluation):
inline constexpr const char* w_rel_fro = "w_rel_fro";    // ‖ΔW‖_F / ‖W‖_F
inline constexpr const char* w_imat_rel = "w_imat_rel";  // imatrix-weighted relative error
// The item's cost:
inline constexpr const char* bytes = "bytes";  // bytes of the unit's tensors at the type
inline constexpr const char* bpw = "bpw";
inline constexpr const char* fallbacks = "fallbacks";  // tensors stored at the fallback type
// Tails of the per-token KLD (quantiles by analysis/measure/kld.h's sorted_quantile), recorded
// when the sweep's backend returns per-token values (PerturbedStats::token_kld):
inline constexpr const char* kld_p99 = "kld_p99";    // 99th percentile of per-token KLD
inline constexpr const char* kld_p999 = "kld_p999";  // 99.9th percentile
// Expert units (sweep --experts): the share of routed token slots the expert received.
inline constexpr const char* route_share = "route_share";
// Alternative-rounding items of `sweep --rounding-choice` (analysis/sweep/rounding_choice.h):
// the weight proxy of the item's rounding and of the base rounding, and whether it was
// evaluated (1) or only proxied (0: no KLD is recorded).
inline constexpr const char* rounding_proxy = "rounding_proxy";
inline constexpr const char* rounding_proxy_base = "rounding_proxy_base";
inline constexpr const char* rounding_measured = "rounding_measured";

}  // namespace quantlens::metric
