// Tokenizer::decode: the tokenizer.json decoder chain as `tokenizers` runs it (see
// tokenizer.h); GGUF vocabularies get the equivalent chain from their loader.
#include "core/error.h"
#include "core/utf8.h"
#include "engine/tokenizer_impl.h"

namespace quantlens {

using namespace tok;

namespace {

// Converts bytes to valid UTF-8 the way Rust's String::from_utf8_lossy does: each maximal
// invalid subsequence becomes one U+FFFD.
std::string utf8_lossy(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        size_t need = 0;
        unsigned char lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            out += static_cast<char>(c);
            ++i;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        }
        size_t j = i + 1, got = 0;
        while (got < need && j < s.size()) {
            const auto d = static_cast<unsigned char>(s[j]);
            if (d < (got == 0 ? lo : 0x80) || d > (got == 0 ? hi : 0xbf)) break;
            ++j, ++got;
        }
        if (need > 0 && got == need) {
            out.append(s.substr(i, j - i));
        } else {
            out += "\xef\xbf\xbd";
        }
        i = (need == 0) ? i + 1 : j;
    }
    return out;
}

}  // namespace

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
    const Impl& im = *impl_;
    std::vector<std::string> parts;
    parts.reserve(ids.size());
    for (int32_t id : ids) parts.push_back(token_text(id));
    if (im.decoders.empty()) {  // tokenizers joins with spaces when there is no decoder
        std::string out;
        for (size_t i = 0; i < parts.size(); ++i) out += (i ? " " : "") + parts[i];
        return out;
    }
    const ByteTable& table = byte_table();
    for (const DecoderStep& d : im.decoders) {
        switch (d.kind) {
            case DecoderStep::Kind::ByteLevel: {
                std::string bytes;
                for (const std::string& t : parts) {
                    std::string b;
                    bool all = true;
                    for (size_t i = 0; i < t.size() && all;) {
                        size_t n = 0;
                        const uint32_t cp = decode_cp(t, i, n);
                        i += n;
                        if (cp >= table.from_cp.size() || table.from_cp[cp] < 0)
                            all = false;
                        else
                            b += static_cast<char>(table.from_cp[cp]);
                    }
                    bytes += all ? b : t;
                }
                parts.assign(1, utf8_lossy(bytes));
                break;
            }
            case DecoderStep::Kind::Replace:
                for (std::string& t : parts) t = replace_all(t, d.from, d.to);
                break;
            case DecoderStep::Kind::ByteFallback: {
                std::vector<std::string> next;
                std::string pending;
                size_t n_pending = 0;
                auto flush = [&] {
                    if (n_pending == 0) return;
                    if (first_invalid_utf8(pending) == pending.size())
                        next.push_back(pending);
                    else
                        for (size_t k = 0; k < n_pending; ++k) next.emplace_back("\xef\xbf\xbd");
                    pending.clear();
                    n_pending = 0;
                };
                for (std::string& t : parts) {
                    auto hex = [](char c) {
                        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                               (c >= 'A' && c <= 'F');
                    };
                    if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && hex(t[3]) &&
                        hex(t[4])) {
                        pending += static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16));
                        ++n_pending;
                    } else {
                        flush();
                        next.push_back(std::move(t));
                    }
                }
                flush();
                parts.swap(next);
                break;
            }
            case DecoderStep::Kind::Fuse: {
                std::string all;
                for (const std::string& t : parts) all += t;
                parts.assign(1, all);
                break;
            }
            case DecoderStep::Kind::Strip:
                for (std::string& t : parts) {
                    size_t lead = 0;
                    while (lead < d.start &&
                           t.compare(lead * d.from.size(), d.from.size(), d.from) == 0)
                        ++lead;
                    t.erase(0, lead * d.from.size());
                    for (size_t k = 0;
                         k < d.stop && t.size() >= d.from.size() &&
                         t.compare(t.size() - d.from.size(), d.from.size(), d.from) == 0;
                         ++k)
                        t.erase(t.size() - d.from.size());
                }
                break;
            case DecoderStep::Kind::Metaspace:
                // tokenizers drops every replacement character of the first token (not only
                // the leading one) unless prepend_scheme is never.
                for (size_t i = 0; i < parts.size(); ++i)
                    parts[i] = replace_all(parts[i], d.from, (i == 0 && d.strip_first) ? "" : " ");
                break;
        }
    }
    std::string out;
    for (const std::string& t : parts) out += t;
    return out;
}

}  // namespace quantlens
