// The pairwise interaction correction of a plan's predicted KLD (issue 25): which pairs of
// units to measure at the plan's chosen types, and the fit that turns their measured KLD into a
// prediction for the whole mix. Pure arithmetic over measurements; analysis/studies/
// interactions.h measures the pairs and stores them.
//
// Model. KLD is quadratic in small logit perturbations, KLD ≈ ½ δᵀFδ, and each unit's
// perturbation δ_i adds to the others', so with d_i the unit's measured ΔKLD alone
//   KLD(i+j)  ≈ d_i + d_j + 2ρ_ij √(d_i d_j)          (ρ_ij: the cosine of δ_i, δ_j under F)
//   KLD(mix)  ≈ Σ d_i + Σ_{i<j} 2ρ_ij √(d_i d_j).
// A measured pair gives ρ_ij = (KLD(i+j) − d_i − d_j) / (2√(d_i d_j)). The pairs fall into
// classes (pair_class: same layer, across layers, with a tensor outside the layers) and each
// class's cross term Σ 2ρ_ij √(d_i d_j) is estimated from a sample of its pairs.
//
// Sampling. Within a class, pairs are drawn with probability proportional to their weight
// w_ij = 2√(d_i d_j) (the pairs that can move the sum), by systematic sampling: pairs sorted by
// weight, n equally spaced points (offset ½) on the cumulative weight; a pair hit k times
// counts k times. The class's cross term is then estimated without bias (Horvitz–Thompson) as
// W_c × the hit-weighted mean of ρ over the sample, W_c = Σ w_ij over the class, with its
// standard error from the spread of the sampled ρ. Deterministic:
// the same plan samples the same pairs, so stored measurements are reused. A class gets pairs
// in proportion to its weight, at least min(2, its pair count) when it has weight.
//
// Measured on llama-8m (bench/RESULTS.md, 2026-12-07): the sampled ρ_ij scatter around 0 with
// a standard deviation of ~0.02 and no class effect larger than its error, so over the ~1,650
// pairs of a 58-tensor mix the cross term is a sum of small terms of either sign; 64 sampled
// pairs estimate it with a standard error of 9–15 % of Σ d_i, more than the cross term itself
// (+2–5 % there). `plan --interactions` therefore predicts the recipe by its measured mix and
// reports this fit beside it (plan_job.h: apply_interaction_fit).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace quantlens {

struct InteractionUnit {
    std::string name;
    int64_t layer = -1;  // -1: outside the layers (token_embd, output) or spanning them
    double d = 0;        // measured ΔKLD at the chosen type (negative read as 0)
};

// "same layer", "across layers" or "outside layers" (either unit has layer −1).
std::string pair_class(const InteractionUnit& a, const InteractionUnit& b);

struct PairPick {
    size_t a = 0, b = 0;  // indices into the units, a < b
    int hits = 1;         // times the systematic sample hit this pair
};

// About n_pairs pairs (fewer when hits repeat or a class has fewer pairs) by the sampling
// above. Refuses n_pairs < 1.
std::vector<PairPick> sample_pairs(const std::vector<InteractionUnit>& units, int n_pairs);

struct PairResult {
    PairPick pick;
    double kld = 0;  // measured KLD of the two units together
};

struct PairClassFit {
    std::string name;
    int64_t n_pairs = 0;     // pairs of the class with weight
    int64_t n_measured = 0;  // distinct pairs measured
    double weight = 0;       // W_c = Σ 2√(d_i d_j) over the class
    double rho = 0;          // hit-weighted mean ρ of the measured pairs
    double cross = 0;        // rho × weight
    // Standard errors (sampling with replacement, ρ's spread over the hits): rho_se =
    // sd(ρ)/√hits, cross_se = rho_se × weight; NaN with fewer than 2 hits.
    double rho_se = 0, cross_se = 0;
};

struct InteractionFit {
    double raw_sum = 0;   // Σ d_i
    double cross = 0;     // Σ over classes
    double cross_se = 0;  // √Σ cross_se² over classes (NaN when a class has one hit)
    double corrected = 0;
    std::vector<PairClassFit> classes;
};

// The fit above. Refuses, naming it, a class with weight but no measured pair, and a pair
// whose indices are out of range.
InteractionFit fit_interactions(const std::vector<InteractionUnit>& units,
                                const std::vector<PairResult>& pairs);

}  // namespace quantlens
