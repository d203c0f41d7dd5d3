// Generates src/quant/tables_generated.h from the format tables ggml ships
// (/work/shared/golden/ggml-format-tables.gguf): the IQ grids, sign tables and non-linear
// value tables are format constants, so they are read from that file rather than retyped.
//
//   c++ -std=c++20 -O1 scripts/gen_quant_tables.cpp -o /tmp/gen_quant_tables
//   /tmp/gen_quant_tables ../shared/golden/ggml-format-tables.gguf src/quant/tables_generated.h
//
// Standalone on purpose (no project libraries): it runs before the quant module exists.
// The GGUF reader here understands exactly what that file holds (v3, 1-D tensors of raw
// bytes, string KVs) and refuses anything else.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Reader {
    const std::vector<uint8_t>& buf;
    size_t pos = 0;

    void need(size_t n) {
        if (pos + n > buf.size()) throw std::runtime_error("truncated GGUF file");
    }
    template <typename T>
    T get() {
        need(sizeof(T));
        T v;
        std::memcpy(&v, buf.data() + pos, sizeof(T));
        pos += sizeof(T);
        return v;
    }
    std::string str() {
        const auto n = get<uint64_t>();
        need(n);
        std::string s(reinterpret_cast<const char*>(buf.data() + pos), n);
        pos += n;
        return s;
    }
};

// Size of one scalar GGUF value type (strings and arrays are handled by the caller).
size_t scalar_size(uint32_t t) {
    switch (t) {
        case 0:
        case 1:
        case 7:
            return 1;
        case 2:
        case 3:
            return 2;
        case 4:
        case 5:
        case 6:
            return 4;
        case 10:
        case 11:
        case 12:
            return 8;
        default:
            throw std::runtime_error("unsupported GGUF value type " + std::to_string(t));
    }
}

void skip_value(Reader& r, uint32_t t) {
    if (t == 8) {
        r.str();
    } else if (t == 9) {
        const auto et = r.get<uint32_t>();
        const auto n = r.get<uint64_t>();
        for (uint64_t i = 0; i < n; ++i) skip_value(r, et);
    } else {
        const size_t s = scalar_size(t);
        r.need(s);
        r.pos += s;
    }
}

struct Tensor {
    uint64_t n_bytes = 0;
    uint64_t offset = 0;
};

struct Spec {
    const char* name;   // tensor name in the GGUF and the C++ array name
    const char* elem;   // expected tables.NAME.elem
    const char* ctype;  // C++ element type
    size_t elem_size;
    size_t count;  // expected element count
};

// Every table the quant module needs, with the element count ggml defines.
const Spec kSpecs[] = {
    {"kmask_iq2xs", "uint8", "uint8_t", 1, 8},     {"ksigns_iq2xs", "uint8", "uint8_t", 1, 128},
    {"iq2xxs_grid", "uint64", "uint64_t", 8, 256}, {"iq2xs_grid", "uint64", "uint64_t", 8, 512},
    {"iq2s_grid", "uint64", "uint64_t", 8, 1024},  {"iq3xxs_grid", "uint32", "uint32_t", 4, 256},
    {"iq3s_grid", "uint32", "uint32_t", 4, 512},   {"kvalues_iq4nl", "int8", "int8_t", 1, 16},
    {"kvalues_fp4", "int8", "int8_t", 1, 16},      {"iq1s_grid", "uint64", "uint64_t", 8, 2048},
};

}  // namespace

int main(int argc, char** argv) try {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s ggml-format-tables.gguf out.h\n", argv[0]);
        return 2;
    }
    std::ifstream in(argv[1], std::ios::binary);
    if (!in) throw std::runtime_error(std::string("cannot open ") + argv[1]);
    const std::vector<uint8_t> buf((std::istreambuf_iterator<char>(in)), {});
    Reader r{buf};
    if (r.get<uint32_t>() != 0x46554747u) throw std::runtime_error("not a GGUF file");
    if (r.get<uint32_t>() != 3) throw std::runtime_error("expected GGUF version 3");
    const auto n_tensors = r.get<uint64_t>();
    const auto n_kv = r.get<uint64_t>();
    std::map<std::string, std::string> kv;
    uint64_t alignment = 32;
    for (uint64_t i = 0; i < n_kv; ++i) {
        const std::string key = r.str();
        const auto t = r.get<uint32_t>();
        if (t == 8) {
            kv[key] = r.str();
        } else if (key == "general.alignment" && t == 4) {
            alignment = r.get<uint32_t>();
        } else {
            skip_value(r, t);
        }
    }
    std::map<std::string, Tensor> tensors;
    for (uint64_t i = 0; i < n_tensors; ++i) {
        const std::string name = r.str();
        const auto n_dims = r.get<uint32_t>();
        if (n_dims != 1) throw std::runtime_error(name + ": expected a 1-D tensor");
        const auto ne = r.get<uint64_t>();
        const auto type = r.get<uint32_t>();
        // ggml stores the raw bytes under an integer type of the element width.
        const size_t width = type == 24 ? 1 : type == 25 ? 2 : type == 26 ? 4 : type == 27 ? 8 : 0;
        if (width == 0) throw std::runtime_error(name + ": unexpected tensor type");
        tensors[name] = {ne * width, r.get<uint64_t>()};
    }
    const size_t data_start = (r.pos + alignment - 1) / alignment * alignment;

    std::string out;
    out +=
        "// GENERATED by scripts/gen_quant_tables.cpp from ggml-format-tables.gguf; do not edit. "
        "Regenerate: c++ -std=c++20 scripts/gen_quant_tables.cpp -o /tmp/g && /tmp/g "
        "../shared/golden/ggml-format-tables.gguf src/quant/tables_generated.h\n";
    out += "// ggml's IQ/FP4 format constants (grids, sign tables, non-linear value tables).\n";
    out += "#pragma once\n\n#include <cstdint>\n\nnamespace quantlens::tables {\n";
    for (const Spec& s : kSpecs) {
        const auto it = tensors.find(s.name);
        if (it == tensors.end()) throw std::runtime_error(std::string("missing table ") + s.name);
        const auto elem = kv.find(std::string("tables.") + s.name + ".elem");
        if (elem == kv.end() || elem->second != s.elem)
            throw std::runtime_error(std::string(s.name) + ": expected element type " + s.elem);
        if (it->second.n_bytes != s.elem_size * s.count)
            throw std::runtime_error(std::string(s.name) + ": unexpected size");
        const size_t base = data_start + it->second.offset;
        if (base + it->second.n_bytes > buf.size()) throw std::runtime_error("truncated data");
        out += "\ninline constexpr " + std::string(s.ctype) + " " + s.name + "[" +
               std::to_string(s.count) + "] = {";
        for (size_t i = 0; i < s.count; ++i) {
            uint64_t v = 0;
            std::memcpy(&v, buf.data() + base + i * s.elem_size, s.elem_size);  // little-endian
            char text[32];
            if (s.elem_size == 1 && s.ctype[0] == 'i') {
                std::snprintf(text, sizeof text, "%d", static_cast<int>(static_cast<int8_t>(v)));
            } else if (s.elem_size == 1) {
                std::snprintf(text, sizeof text, "%u", static_cast<unsigned>(v));
            } else {
                std::snprintf(text, sizeof text, "0x%0*llxu", static_cast<int>(2 * s.elem_size),
                              static_cast<unsigned long long>(v));
            }
            out += (i % 8 == 0) ? "\n    " : " ";
            out += text;
            out += ",";
        }
        out += "\n};\n";
    }
    out += "\n}  // namespace quantlens::tables\n";
    std::ofstream o(argv[2], std::ios::binary);
    o << out;
    if (!o) throw std::runtime_error(std::string("cannot write ") + argv[2]);
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "gen_quant_tables: %s\n", e.what());
    return 1;
}
