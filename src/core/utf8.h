// UTF-8 validation, shared by the tokenizer (which refuses invalid input) and the readers of
// evaluation and calibration text (which must name the file, not the model, when it is bad).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace quantlens {

// Offset of the first byte that starts an invalid UTF-8 sequence (overlong forms, surrogates
// and code points above U+10FFFF included), or text.size() when all of it is valid.
size_t first_invalid_utf8(std::string_view text);

// read_text_file, then an Error naming the file, byte offset, line and column of the first
// invalid sequence.
std::string read_utf8_text_file(const std::string& path);

}  // namespace quantlens
