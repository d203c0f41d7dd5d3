// DeepSeek-V3's grouped sigmoid routing (see moe_routing.h).
#include "engine/layers/moe_routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace quantlens {

namespace {

float sigmoid(float x) {
    return 1.0f / (1.0f + std::exp(-x));
}

// Higher value first; the lower index wins a tie.
struct ByValue {
    const float* v;
    bool operator()(int32_t a, int32_t b) const { return v[a] > v[b] || (v[a] == v[b] && a < b); }
};

void weigh(int32_t* ids, float* weights, const float* s, const SigmoidRouting& r) {
    double sum = 0.0;
    for (int64_t i = 0; i < r.k; ++i) sum += s[ids[i]];
    for (int64_t i = 0; i < r.k; ++i) {
        const double w = r.renormalize ? s[ids[i]] / (sum + 1e-20) : s[ids[i]];
        weights[i] = static_cast<float>(w) * r.scale;
    }
}

}  // namespace

void route_sigmoid_grouped(int32_t* ids, float* weights, const float* logits, const float* bias,
                           int64_t N, const SigmoidRouting& r) {
    const int64_t E = r.n_experts, G = r.n_groups, per = E / G;
    std::vector<float> s(E), choice(E), group(G);
    std::vector<int32_t> order(std::max(E, G));
    for (int64_t n = 0; n < N; ++n) {
        for (int64_t e = 0; e < E; ++e) {
            s[e] = sigmoid(logits[n * E + e]);
            choice[e] = s[e] + (bias ? bias[e] : 0.0f);
        }
        if (G > 1) {
            for (int64_t g = 0; g < G; ++g) {  // sum of the two best in the group
                float a = -INFINITY, b = -INFINITY;
                for (int64_t e = g * per; e < (g + 1) * per; ++e) {
                    if (choice[e] > a) {
                        b = a, a = choice[e];
                    } else if (choice[e] > b) {
                        b = choice[e];
                    }
                }
                group[g] = a + b;
            }
            std::iota(order.begin(), order.begin() + G, 0);
            std::partial_sort(order.begin(), order.begin() + r.groups_used, order.begin() + G,
                              ByValue{group.data()});
            std::vector<bool> kept(G, false);
            for (int64_t i = 0; i < r.groups_used; ++i) kept[order[i]] = true;
            for (int64_t e = 0; e < E; ++e)
                if (!kept[e / per]) choice[e] = 0.0f;
        }
        std::iota(order.begin(), order.begin() + E, 0);
        std::partial_sort(order.begin(), order.begin() + r.k, order.begin() + E,
                          ByValue{choice.data()});
        std::copy_n(order.begin(), r.k, ids + n * r.k);
        weigh(ids + n * r.k, weights + n * r.k, s.data(), r);
    }
}

void route_sigmoid_grouped_ref(int32_t* ids, float* weights, const float* logits, const float* bias,
                               int64_t N, const SigmoidRouting& r) {
    const int64_t E = r.n_experts, G = r.n_groups, per = E / G;
    for (int64_t n = 0; n < N; ++n) {
        std::vector<float> s(E), choice(E);
        for (int64_t e = 0; e < E; ++e) {
            s[e] = 1.0f / (1.0f + std::exp(-logits[n * E + e]));
            choice[e] = s[e] + (bias ? bias[e] : 0.0f);
        }
        std::vector<float> group(G);
        for (int64_t g = 0; g < G; ++g) {
            std::vector<float> in(choice.begin() + g * per, choice.begin() + (g + 1) * per);
            std::sort(in.begin(), in.end(), std::greater<float>());
            group[g] = in.size() >= 2 ? in[0] + in[1] : in[0];
        }
        std::vector<int32_t> groups(G);
        std::iota(groups.begin(), groups.end(), 0);
        std::stable_sort(groups.begin(), groups.end(),
                         [&](int32_t a, int32_t b) { return group[a] > group[b]; });
        std::vector<float> masked(E, 0.0f);
        for (int64_t i = 0; i < (G > 1 ? r.groups_used : G); ++i)
            for (int64_t e = groups[i] * per; e < (groups[i] + 1) * per; ++e) masked[e] = choice[e];
        std::vector<int32_t> experts(E);
        std::iota(experts.begin(), experts.end(), 0);
        std::stable_sort(experts.begin(), experts.end(),
                         [&](int32_t a, int32_t b) { return masked[a] > masked[b]; });
        std::copy_n(experts.begin(), r.k, ids + n * r.k);
        weigh(ids + n * r.k, weights + n * r.k, s.data(), r);
    }
}

}  // namespace quantlens
