// Builds the IQ search structures from the generated grid tables (see iq_grids.h). The
// grids' dequantized byte values are mapped back to lattice levels here, so the only
// source of the lattices is tables_generated.h.
#include "quant/iq_grids.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>
#include <optional>

#include "core/error.h"
#include "quant/tables_generated.h"

namespace quantlens::kernels::iq {
namespace {

struct Source {
    const void* grid;  // the dequantization grid (bytes per point = dim)
    int n_points;
    int dim;
    int bits;      // per coordinate in a packed vector
    int map_size;  // packed vectors considered (ggml's kmap_size)
    int nwant;     // neighbours span this many distinct nearest distances
    int (*level)(int byte);
};

int level_iq2(int b) {  // IQ2 grids hold 8, 25, 43
    switch (b) {
        case 0x08:
            return 0;
        case 0x19:
            return 1;
        case 0x2b:
            return 2;
        default:
            QL_ASSERT(false && "unexpected IQ2 grid value");
            return 0;
    }
}
int level_iq3xxs(int b) {
    return b == 62 ? 7 : (b - 4) / 8;
}  // 4, 12, ..., 52, 62
int level_iq3s(int b) {
    return (b - 1) / 2;
}  // 1, 3, ..., 15
int level_iq1(int b) {
    return static_cast<int8_t>(b) + 1;
}  // -1, 0, +1

// Each grid's parameters as ggml's iq2xs_init_impl / iq3xs_init_impl set them.
Source source(GridKind kind) {
    switch (kind) {
        case GridKind::Iq2xxs:
            return {tables::iq2xxs_grid, 256, 8, 2, 43692, 2, level_iq2};
        case GridKind::Iq2xs:
            return {tables::iq2xs_grid, 512, 8, 2, 43692, 2, level_iq2};
        case GridKind::Iq2s:
            return {tables::iq2s_grid, 1024, 8, 2, 43692, 1, level_iq2};
        case GridKind::Iq1s:
            return {tables::iq1s_grid, 2048, 8, 2, 43692, 3, level_iq1};
        case GridKind::Iq3xxs:
            return {tables::iq3xxs_grid, 256, 4, 3, 4096, 2, level_iq3xxs};
        case GridKind::Iq3s:
            return {tables::iq3s_grid, 512, 4, 3, 4096, 3, level_iq3s};
    }
    QL_ASSERT(false);
    return {};
}

// Squared distance from pos to every grid point (Dim fixed so the loop vectorizes).
template <int Dim>
void distances(const IqGrid& g, const int8_t* pos, int* dist) {
    for (int j = 0; j < g.n_points; ++j) {
        const int8_t* p = g.point(j);
        int d2 = 0;
        for (int k = 0; k < Dim; ++k) d2 += (p[k] - pos[k]) * (p[k] - pos[k]);
        dist[j] = d2;
    }
}

IqGrid build(GridKind kind) {
    const Source s = source(kind);
    IqGrid g;
    g.n_points = s.n_points;
    g.dim = s.dim;
    g.bits = s.bits;
    g.points.resize(static_cast<size_t>(s.n_points) * s.dim);
    g.map.assign(s.map_size, -1);
    const auto* bytes = static_cast<const uint8_t*>(s.grid);  // little-endian tables
    const int mask = (1 << s.bits) - 1;
    for (int i = 0; i < s.n_points; ++i) {
        int packed = 0;
        for (int k = 0; k < s.dim; ++k) {
            const int l = s.level(bytes[i * s.dim + k]);
            g.points[i * s.dim + k] = static_cast<int8_t>(2 * l + 1);
            packed |= l << (s.bits * k);
        }
        g.map[packed] = i;
    }
    g.fpoints.assign(g.points.begin(), g.points.end());

    std::vector<int> dist(s.n_points);
    std::vector<int> order;
    int8_t pos[8];
    for (int u = 0; u < s.map_size; ++u) {
        if (g.map[u] >= 0) continue;
        for (int k = 0; k < s.dim; ++k)
            pos[k] = static_cast<int8_t>(2 * ((u >> (s.bits * k)) & mask) + 1);
        if (s.dim == 8) {
            distances<8>(g, pos, dist.data());
        } else {
            distances<4>(g, pos, dist.data());
        }
        // The nwant smallest distinct squared distances.
        std::array<int, 3> smallest{};
        int have = 0;
        for (int j = 0; j < s.n_points; ++j) {
            const int d2 = dist[j];
            if (have == s.nwant && d2 >= smallest[have - 1]) continue;
            int at = 0;
            while (at < have && smallest[at] < d2) ++at;
            if (at < have && smallest[at] == d2) continue;
            for (int m = std::min(have, s.nwant - 1); m > at; --m) smallest[m] = smallest[m - 1];
            smallest[at] = d2;
            have = std::min(have + 1, s.nwant);
        }
        const int limit = smallest[have - 1];
        order.clear();
        for (int j = 0; j < s.n_points; ++j)
            if (dist[j] <= limit) order.push_back(j);
        // By distance, then grid index (order is already ascending in index).
        std::stable_sort(order.begin(), order.end(),
                         [&](int a, int b) { return dist[a] < dist[b]; });
        g.map[u] = -static_cast<int32_t>(g.neighbours.size()) - 1;
        g.neighbours.push_back(static_cast<uint16_t>(order.size()));
        for (int j : order) g.neighbours.push_back(static_cast<uint16_t>(j));
    }
    return g;
}

constexpr size_t kGridKinds = static_cast<size_t>(GridKind::Iq3s) + 1;

}  // namespace

// Each grid is built once, on first use, by whichever thread asks first.
const IqGrid& iq_grid(GridKind kind) {
    static std::array<std::once_flag, kGridKinds> once;
    static std::array<std::optional<IqGrid>, kGridKinds> grids;
    const auto i = static_cast<size_t>(kind);
    QL_ASSERT(i < kGridKinds);
    std::call_once(once[i], [&] { grids[i].emplace(build(kind)); });
    return *grids[i];
}

}  // namespace quantlens::kernels::iq
