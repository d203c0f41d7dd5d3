#include "core/utf8.h"

#include <cstdint>

#include "core/error.h"
#include "core/mmap_file.h"

namespace quantlens {

size_t first_invalid_utf8(std::string_view text) {
    size_t i = 0;
    while (i < text.size()) {
        const unsigned char c = text[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80)
            n = 1, cp = c;
        else if ((c >> 5) == 6)
            n = 2, cp = c & 0x1f;
        else if ((c >> 4) == 14)
            n = 3, cp = c & 0x0f;
        else if ((c >> 3) == 30)
            n = 4, cp = c & 0x07;
        else
            return i;
        if (i + n > text.size()) return i;
        for (size_t k = 1; k < n; ++k) {
            if ((static_cast<unsigned char>(text[i + k]) & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (text[i + k] & 0x3f);
        }
        static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += n;
    }
    return i;
}

std::string read_utf8_text_file(const std::string& path) {
    std::string text = read_text_file(path);
    const size_t bad = first_invalid_utf8(text);
    if (bad != text.size()) {
        size_t line = 1, column = 1;
        for (size_t i = 0; i < bad; ++i) {
            if (text[i] == '\n') {
                ++line;
                column = 1;
            } else if ((static_cast<unsigned char>(text[i]) & 0xc0) != 0x80) {
                ++column;
            }
        }
        fail(
            "{}: not valid UTF-8 at byte {} (line {}, column {}: byte 0x{:02x}); text files "
            "must be UTF-8",
            path, bad, line, column, static_cast<unsigned char>(text[bad]));
    }
    return text;
}

}  // namespace quantlens
