// Fuzz entry points (see entries.h).
#include "entries.h"

#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/model_config.h"
#include "formats/safetensors.h"

namespace quantlens::fuzz {

bool gguf_entry(const uint8_t* data, size_t size) {
    try {
        const GgufFile g = GgufFile::parse({data, size}, "fuzz.gguf");
        uint64_t sum = 0;
        for (const auto& t : g.tensors()) {
            const auto bytes = g.tensor_data(t);
            if (!bytes.empty()) sum += bytes.front() + bytes.back();
        }
        (void)sum;
        // A parsed file must survive re-emission: write, parse, write again → same bytes.
        GgufWriter w;
        w.copy_from(g);
        const std::vector<uint8_t> once = w.serialize();
        const GgufFile again = GgufFile::parse(once, "fuzz-rewritten.gguf");
        GgufWriter w2;
        w2.copy_from(again);
        QL_ASSERT(w2.serialize() == once);
        try {
            (void)config_from_gguf(g);
        } catch (const Error&) {
        }
        return true;
    } catch (const Error&) {
        return false;
    }
}

bool safetensors_entry(const uint8_t* data, size_t size) {
    try {
        const SafetensorsModel m = SafetensorsModel::parse({data, size}, "fuzz.safetensors");
        for (const auto& t : m.tensors()) {
            if (t.dtype != StDtype::F32 && t.dtype != StDtype::F16 && t.dtype != StDtype::BF16)
                continue;
            std::vector<float> out(static_cast<size_t>(t.n_elements()));
            SafetensorsModel::to_f32(t, out);
        }
        return true;
    } catch (const Error&) {
        return false;
    }
}

bool config_entry(const uint8_t* data, size_t size) {
    try {
        (void)parse_hf_config(std::string(reinterpret_cast<const char*>(data), size),
                              "fuzz/config.json");
        return true;
    } catch (const Error&) {
        return false;
    }
}

}  // namespace quantlens::fuzz
