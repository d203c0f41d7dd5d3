// Tokenizer encode pipeline (see tokenizer.h for the contract): added-token split,
// normalizer, pre-tokenizer and model. The decoder chain is in tokenizer_decode.cpp, the
// loaders in tokenizer_hf.cpp and tokenizer_gguf.cpp.
#include "engine/tokenizer.h"

#include <algorithm>
#include <limits>
#include <queue>

#include "core/error.h"
#include "core/utf8.h"
#include "engine/tokenizer_impl.h"
#include "model/model.h"

namespace quantlens {

namespace tok {

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xc0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xe0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
        out += static_cast<char>(0xf0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    }
}

size_t utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c >> 5) == 6) return 2;
    if ((c >> 4) == 14) return 3;
    if ((c >> 3) == 30) return 4;
    return 1;
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
    if (from.empty()) return std::string(s);
    std::string out;
    out.reserve(s.size());
    size_t pos = 0;
    for (size_t hit; (hit = s.find(from, pos)) != std::string_view::npos; pos = hit + from.size())
        out.append(s.substr(pos, hit - pos)).append(to);
    out.append(s.substr(pos));
    return out;
}

uint32_t decode_cp(std::string_view s, size_t i, size_t& n) {
    const auto c = static_cast<unsigned char>(s[i]);
    n = std::min(utf8_len(c), s.size() - i);
    uint32_t cp = n == 1 ? c : (c & (0x7f >> n));
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
    return cp;
}

ByteTable::ByteTable() {
    from_cp.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
        const bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        to_cp[b] = printable ? static_cast<uint32_t>(b) : next++;
        from_cp[to_cp[b]] = b;
    }
}

const ByteTable& byte_table() {
    static const ByteTable table;
    return table;
}

Regex::Regex(const std::string& pattern, const std::string& where) {
    int err = 0;
    PCRE2_SIZE offset = 0;
    code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                         PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        fail("{}: pre-tokenizer regex does not compile at offset {}: {}", where, offset,
             reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // optional speed-up; falls back silently
    match = pcre2_match_data_create_from_pattern(code, nullptr);
}

Regex::~Regex() {
    pcre2_match_data_free(match);
    pcre2_code_free(code);
}

}  // namespace tok

using namespace tok;

namespace {

// Unicode White_Space, for added tokens with lstrip/rstrip.
bool is_space_cp(uint32_t c) {
    return (c >= 9 && c <= 13) || c == ' ' || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

// A span of text, or an added token found in it.
struct Segment {
    size_t start = 0, len = 0;
    int32_t id = -1;
};

// Splits `text` on the added tokens that `wanted` selects: leftmost match first, the longest
// at the same position (tokenizers' leftmost-longest Aho-Corasick); lstrip/rstrip widen a
// match over the whitespace next to it.
template <class Wanted>
std::vector<Segment> split_added(std::string_view text, const std::vector<AddedToken>& added,
                                 Wanted wanted) {
    std::vector<Segment> out;
    size_t pos = 0;
    std::vector<size_t> next(added.size(), 0);  // cached find() results
    std::vector<char> valid(added.size(), 0);
    while (pos < text.size()) {
        size_t hit = std::string_view::npos, hit_len = 0;
        const AddedToken* best = nullptr;
        for (size_t k = 0; k < added.size(); ++k) {
            const AddedToken& a = added[k];
            if (!wanted(a)) continue;
            if (!valid[k] || next[k] < pos) next[k] = text.find(a.match, pos), valid[k] = 1;
            const size_t p = next[k];
            if (p < hit || (p == hit && p != std::string_view::npos && a.match.size() > hit_len))
                hit = p, hit_len = a.match.size(), best = &a;
        }
        if (!best) break;
        size_t start = hit, end = hit + hit_len;
        if (best->rstrip) {
            size_t n = 0;
            while (end < text.size() && is_space_cp(decode_cp(text, end, n))) end += n;
        }
        if (best->lstrip) {
            while (start > pos) {
                size_t b = start - 1;
                while (b > pos && (static_cast<unsigned char>(text[b]) & 0xc0) == 0x80) --b;
                size_t n = 0;
                if (!is_space_cp(decode_cp(text, b, n))) break;
                start = b;
            }
        }
        if (start > pos) out.push_back({pos, start - pos, -1});
        out.push_back({start, end - start, best->id});
        pos = end;
    }
    if (pos < text.size()) out.push_back({pos, text.size() - pos, -1});
    return out;
}

struct HeapMerge {
    int32_t rank;
    size_t pos;
    int32_t id;
    bool operator<(const HeapMerge& o) const {  // max-heap → lowest rank, then lowest pos
        return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
};

uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

}  // namespace

void Tokenizer::Impl::add_token(int32_t id, std::string text) {
    // The id indexes `tokens`: a negative one would write outside it, a huge one allocate
    // gigabytes. Real vocabularies are dense and under a million tokens.
    QL_CHECK(id >= 0 && id < kMaxTokens, "{}: token id {} for '{}' is outside [0, {})", source, id,
             text, kMaxTokens);
    if (id >= static_cast<int32_t>(tokens.size())) tokens.resize(id + 1);
    ids.emplace(text, id);
    tokens[id] = std::move(text);
}

void Tokenizer::Impl::add_merge(const std::string& a, const std::string& b, int32_t rank) {
    const int32_t ia = lookup(a), ib = lookup(b), im = lookup(a + b);
    if (ia < 0 || ib < 0 || im < 0) return;  // cannot fire: its result is not a token
    merges.emplace(pair_key(ia, ib), std::make_pair(rank, im));
}

void Tokenizer::Impl::finish() {
    const ByteTable& table = byte_table();
    for (int b = 0; b < 256; ++b) {
        std::string s;
        append_utf8(s, table.to_cp[b]);
        byte_level_ids[b] = lookup(s);
        byte_fallback_ids[b] = lookup(fmt::format("<0x{:02X}>", b));
    }
    for (AddedToken& a : added) a.match = a.normalized ? normalize(a.content) : a.content;
    // Longest first so that a token containing another wins at the same position.
    std::stable_sort(added.begin(), added.end(),
                     [](const auto& x, const auto& y) { return x.match.size() > y.match.size(); });
    std::erase_if(added, [](const AddedToken& a) { return a.match.empty(); });
}

std::string Tokenizer::Impl::normalize(std::string_view text) const {
    std::string norm(text);
    for (const NormalizerStep& step : normalizer) {
        if (step.kind == NormalizerStep::Kind::Prepend) {
            if (!norm.empty()) norm.insert(0, step.to);
        } else {
            norm = replace_all(norm, step.from, step.to);
        }
    }
    return norm;
}

void merge_symbols_reference(const Tokenizer::Impl& im, std::vector<int32_t>& sym) {
    while (sym.size() > 1) {
        int32_t best_rank = std::numeric_limits<int32_t>::max(), best_id = -1;
        size_t best_pos = 0;
        for (size_t i = 0; i + 1 < sym.size(); ++i) {
            auto it = im.merges.find(pair_key(sym[i], sym[i + 1]));
            if (it != im.merges.end() && it->second.first < best_rank) {
                best_rank = it->second.first;
                best_id = it->second.second;
                best_pos = i;
            }
        }
        if (best_id < 0) break;
        sym[best_pos] = best_id;
        sym.erase(sym.begin() + static_cast<ptrdiff_t>(best_pos) + 1);
    }
}

void merge_symbols(const Tokenizer::Impl& im, std::vector<int32_t>& sym) {
    const size_t n = sym.size();
    if (n < 2) return;
    if (n <= 8) return merge_symbols_reference(im, sym);  // a heap does not pay off
    std::vector<int64_t> prev(n), next(n);
    std::vector<char> alive(n, 1);
    for (size_t i = 0; i < n; ++i) {
        prev[i] = static_cast<int64_t>(i) - 1;
        next[i] = i + 1 < n ? static_cast<int64_t>(i + 1) : -1;
    }
    std::priority_queue<HeapMerge> heap;
    auto push = [&](size_t pos) {
        if (next[pos] < 0) return;
        auto it = im.merges.find(pair_key(sym[pos], sym[static_cast<size_t>(next[pos])]));
        if (it != im.merges.end()) heap.push({it->second.first, pos, it->second.second});
    };
    for (size_t i = 0; i + 1 < n; ++i) push(i);
    while (!heap.empty()) {
        const HeapMerge top = heap.top();
        heap.pop();
        if (!alive[top.pos] || next[top.pos] < 0) continue;
        const auto right = static_cast<size_t>(next[top.pos]);
        // Skip entries made stale by an earlier merge at either side.
        auto it = im.merges.find(pair_key(sym[top.pos], sym[right]));
        if (it == im.merges.end() || it->second.second != top.id) continue;
        sym[top.pos] = top.id;
        alive[right] = 0;
        next[top.pos] = next[right];
        if (next[right] >= 0)
            prev[static_cast<size_t>(next[right])] = static_cast<int64_t>(top.pos);
        if (prev[top.pos] >= 0) push(static_cast<size_t>(prev[top.pos]));
        push(top.pos);
    }
    size_t w = 0;
    for (size_t i = 0; i < n; ++i)
        if (alive[i]) sym[w++] = sym[i];
    sym.resize(w);
}

void Tokenizer::Impl::initial_symbols(std::string_view word, std::vector<int32_t>& sym) const {
    sym.clear();
    if (kind == ModelKind::ByteLevelBpe) {
        for (unsigned char c : word) {
            QL_CHECK(byte_level_ids[c] >= 0, "{}: vocabulary has no token for byte 0x{:02x}",
                     source, c);
            sym.push_back(byte_level_ids[c]);
        }
        return;
    }
    // CharBpe, as tokenizers' BPE::merge_word: a character that is a token; else its <0xNN>
    // bytes (byte_fallback); else unk, consecutive unknowns fused into one with fuse_unk;
    // without unk the character is dropped.
    bool pending_unk = false;
    for (size_t i = 0; i < word.size();) {
        const size_t n = std::min(utf8_len(static_cast<unsigned char>(word[i])), word.size() - i);
        const std::string ch(word.substr(i, n));
        i += n;
        const int32_t id = lookup(ch);
        if (id >= 0) {
            if (pending_unk) sym.push_back(unk), pending_unk = false;
            sym.push_back(id);
            continue;
        }
        if (byte_fallback) {
            bool all = true;
            for (unsigned char b : ch) all = all && byte_fallback_ids[b] >= 0;
            if (all) {
                for (unsigned char b : ch) sym.push_back(byte_fallback_ids[b]);
                continue;
            }
        }
        if (unk >= 0) {
            if (pending_unk && !fuse_unk) sym.push_back(unk);
            pending_unk = true;
        }
    }
    if (pending_unk) sym.push_back(unk);
}

void Tokenizer::Impl::encode_word(std::string_view word, std::vector<int32_t>& out) const {
    if (ignore_merges) {
        std::string as_token;
        if (kind == ModelKind::ByteLevelBpe) {
            for (unsigned char c : word) append_utf8(as_token, byte_table().to_cp[c]);
        } else {
            as_token = std::string(word);
        }
        if (const int32_t id = lookup(as_token); id >= 0) {
            out.push_back(id);
            return;
        }
    }
    std::vector<int32_t> sym;
    initial_symbols(word, sym);
    merge_symbols(*this, sym);
    out.insert(out.end(), sym.begin(), sym.end());
}

void Tokenizer::Impl::pretokenize_and_encode(
    std::string_view text, bool at_input_start,
    std::unordered_map<std::string, std::vector<int32_t>>& cache, std::vector<int32_t>& out) const {
    std::string buffer;
    std::vector<std::pair<size_t, size_t>> pieces, next;  // (offset, length) into `text`
    if (metaspace_enabled) {
        const std::string& rep = metaspace.replacement;
        buffer = replace_all(text, " ", rep);
        const bool prepend = buffer.compare(0, rep.size(), rep) != 0 &&
                             (metaspace.prepend == Metaspace::Prepend::Always ||
                              (metaspace.prepend == Metaspace::Prepend::First && at_input_start));
        if (prepend) buffer.insert(0, rep);
        text = buffer;
        if (metaspace.split) {
            size_t start = 0;
            for (size_t p = text.find(rep, 1); p != std::string_view::npos;
                 p = text.find(rep, p + rep.size())) {
                pieces.emplace_back(start, p - start);
                start = p;
            }
            pieces.emplace_back(start, text.size() - start);
        } else {
            pieces.emplace_back(0, text.size());
        }
    } else {
        pieces.emplace_back(0, text.size());
    }
    for (const auto& re : splits) {
        next.clear();
        for (auto [start, len] : pieces) {
            const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data() + start);
            size_t pos = 0;
            while (pos < len) {
                const int rc = pcre2_match(re->code, subject, len, pos, PCRE2_NO_UTF_CHECK,
                                           re->match, nullptr);
                if (rc == PCRE2_ERROR_NOMATCH) break;
                QL_CHECK(rc >= 0, "{}: pre-tokenizer regex failed (PCRE2 error {})", source, rc);
                const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(re->match);
                if (ov[0] > pos) next.emplace_back(start + pos, ov[0] - pos);  // unmatched gap
                if (ov[1] == ov[0]) {  // empty match: step one code point
                    size_t step = 1;
                    while (ov[0] + step < len && (text[start + ov[0] + step] & 0xc0) == 0x80)
                        ++step;
                    next.emplace_back(start + ov[0], step);
                    pos = ov[0] + step;
                    continue;
                }
                next.emplace_back(start + ov[0], ov[1] - ov[0]);
                pos = ov[1];
            }
            if (pos < len) next.emplace_back(start + pos, len - pos);
        }
        pieces.swap(next);
    }
    for (auto [start, len] : pieces) {
        if (len == 0) continue;
        std::string key(text.substr(start, len));
        auto it = cache.find(key);
        if (it == cache.end()) {
            std::vector<int32_t> ids_out;
            encode_word(key, ids_out);
            it = cache.emplace(std::move(key), std::move(ids_out)).first;
        }
        out.insert(out.end(), it->second.begin(), it->second.end());
    }
}

// llama.cpp's SPM session (llm_tokenizer_spm_session): start from UTF-8 characters, merge
// the adjacent pair whose concatenation is the highest-scoring token (leftmost on ties) until
// none is left; a leftover character that is not a token becomes its <0xNN> bytes.
void Tokenizer::Impl::scored_bigrams(std::string_view text, std::vector<int32_t>& out) const {
    struct Symbol {
        int64_t prev, next;
        size_t start, n;
    };
    struct Bigram {
        float score;
        int64_t left, right;
        size_t size;
        bool operator<(const Bigram& o) const {  // max-heap: highest score, then leftmost
            return score != o.score ? score < o.score : left > o.left;
        }
    };
    std::vector<Symbol> sym;
    for (size_t offs = 0; offs < text.size();) {
        const size_t n =
            std::min(utf8_len(static_cast<unsigned char>(text[offs])), text.size() - offs);
        const auto index = static_cast<int64_t>(sym.size());
        sym.push_back({index - 1, offs + n == text.size() ? -1 : index + 1, offs, n});
        offs += n;
    }
    std::priority_queue<Bigram> queue;
    auto try_add = [&](int64_t left, int64_t right) {
        if (left < 0 || right < 0) return;
        const auto& l = sym[static_cast<size_t>(left)];
        const auto& r = sym[static_cast<size_t>(right)];
        const int32_t id = lookup(std::string(text.substr(l.start, l.n + r.n)));
        if (id < 0) return;
        queue.push({scores[static_cast<size_t>(id)], left, right, l.n + r.n});
    };
    for (size_t i = 1; i < sym.size(); ++i)
        try_add(static_cast<int64_t>(i) - 1, static_cast<int64_t>(i));
    while (!queue.empty()) {
        const Bigram b = queue.top();
        queue.pop();
        auto& l = sym[static_cast<size_t>(b.left)];
        auto& r = sym[static_cast<size_t>(b.right)];
        if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;
        l.n += r.n;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) sym[static_cast<size_t>(r.next)].prev = b.left;
        try_add(l.prev, b.left);
        try_add(b.left, l.next);
    }
    for (int64_t i = sym.empty() ? -1 : 0; i != -1; i = sym[static_cast<size_t>(i)].next) {
        const Symbol& s = sym[static_cast<size_t>(i)];
        const std::string piece(text.substr(s.start, s.n));
        if (const int32_t id = lookup(piece); id >= 0) {
            out.push_back(id);
            continue;
        }
        for (unsigned char c : piece) {
            const int32_t id = byte_fallback_ids[c] >= 0 ? byte_fallback_ids[c] : unk;
            QL_CHECK(id >= 0, "{}: no <0x{:02X}> token and no unknown token for byte 0x{:02x}",
                     source, c, c);
            out.push_back(id);
        }
    }
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

int64_t Tokenizer::vocab_size() const {
    return static_cast<int64_t>(impl_->tokens.size());
}
int32_t Tokenizer::bos_id() const {
    return impl_->bos;
}
int32_t Tokenizer::eos_id() const {
    return impl_->eos;
}
bool Tokenizer::add_bos() const {
    return impl_->add_bos;
}
const std::string& Tokenizer::token_text(int32_t id) const {
    QL_CHECK(id >= 0 && id < static_cast<int32_t>(impl_->tokens.size()),
             "{}: token id {} out of range [0, {})", impl_->source, id, impl_->tokens.size());
    return impl_->tokens[id];
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
    const Impl& im = *impl_;
    const size_t bad = first_invalid_utf8(text);
    QL_CHECK(bad == text.size(), "tokenizer {}: input text is not valid UTF-8 at byte {}",
             im.source, bad);
    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 2);
    if (add_bos) {
        QL_CHECK(im.bos >= 0, "{}: BOS requested but the tokenizer names no BOS token", im.source);
        out.push_back(im.bos);
    }
    auto raw = [&](const AddedToken& a) { return !a.normalized && (parse_special || !a.special); };
    auto normalized = [&](const AddedToken& a) {
        return a.normalized && (parse_special || !a.special);
    };

    if (im.kind == ModelKind::ScoredBigrams) {
        // llama.cpp: added tokens split the raw text; a space goes before text that starts
        // the input or follows a token (add_space_prefix), then ' ' → U+2581.
        bool after_token = true;
        for (const Segment& s : split_added(text, im.added, raw)) {
            if (s.id >= 0) {
                out.push_back(s.id);
                after_token = true;
                continue;
            }
            std::string piece = (im.add_space_prefix && after_token) ? " " : "";
            piece.append(text.substr(s.start, s.len));
            im.scored_bigrams(replace_all(piece, " ", "\xe2\x96\x81"), out);
            after_token = false;
        }
        return out;
    }

    // Hugging Face: split on raw-matched added tokens, normalize each remaining span, split
    // it on the normalized added tokens, pre-tokenize and run the model on the rest.
    std::unordered_map<std::string, std::vector<int32_t>> cache;
    for (const Segment& s : split_added(text, im.added, raw)) {
        if (s.id >= 0) {
            out.push_back(s.id);
            continue;
        }
        const std::string norm = im.normalize(text.substr(s.start, s.len));
        for (const Segment& n : split_added(norm, im.added, normalized)) {
            if (n.id >= 0) {
                out.push_back(n.id);
                continue;
            }
            // Metaspace's "first" prepends only to the piece at offset 0 of the input.
            const bool at_start = s.start == 0 && n.start == 0;
            im.pretokenize_and_encode(std::string_view(norm).substr(n.start, n.len), at_start,
                                      cache, out);
        }
    }
    return out;
}

Tokenizer Tokenizer::load(const Model& model) {
    if (const GgufFile* gguf = model.gguf()) return from_gguf(*gguf);
    return from_hf_json(model.tokenizer_path());
}

}  // namespace quantlens
