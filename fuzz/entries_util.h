// Helpers shared by the fuzz entry points (entries*.cpp), header-only so the corpus replay
// test can include the entry sources directly.
#pragma once

#include <stdlib.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "core/error.h"

namespace quantlens::fuzz::detail {

namespace fs = std::filesystem;

// This process's scratch folder (see entries.h), made on first use. Never freed: the
// cleanup registered with atexit runs after static destructors would have run.
inline const fs::path& scratch() {
    static const fs::path* dir = [] {
        const char* tmp = std::getenv("TMPDIR");
        std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/ql-fuzz-XXXXXX";
        QL_ASSERT(mkdtemp(tmpl.data()) != nullptr);
        std::atexit([] {
            std::error_code ec;
            fs::remove_all(scratch(), ec);
        });
        return new fs::path(tmpl);
    }();
    return *dir;
}

inline void write_file(const fs::path& path, std::string_view bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    QL_ASSERT(f.good());
}

// A fresh, empty folder under scratch().
inline fs::path clean_dir(const std::string& name) {
    const fs::path dir = scratch() / name;
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir;
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

}  // namespace quantlens::fuzz::detail
