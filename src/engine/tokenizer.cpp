// Byte-level BPE: see tokenizer.h for the contract.
#include "engine/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap_file.h"
#include "core/utf8.h"
#include "formats/gguf.h"
#include "model/model.h"

namespace quantlens {

const char* const kLlama3PretokenizerRegex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kGpt2PretokenizerRegex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

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

// GPT-2's reversible byte → printable code point table: printable Latin-1 bytes map to
// themselves, the other 68 bytes to 256, 257, ... in byte order.
struct ByteTable {
    std::array<uint32_t, 256> to_cp{};
    std::array<int, 324> from_cp{};
    ByteTable() {
        from_cp.fill(-1);
        uint32_t next = 256;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
            to_cp[b] = printable ? static_cast<uint32_t>(b) : next++;
            from_cp[to_cp[b]] = b;
        }
    }
};
const ByteTable& byte_table() {
    static const ByteTable table;
    return table;
}

struct Regex {
    pcre2_code* code = nullptr;
    pcre2_match_data* match = nullptr;
    Regex(const std::string& pattern, const std::string& where) {
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
    ~Regex() {
        pcre2_match_data_free(match);
        pcre2_code_free(code);
    }
    Regex(const Regex&) = delete;
    Regex& operator=(const Regex&) = delete;
};

}  // namespace

struct Tokenizer::Impl {
    static constexpr int32_t kMaxTokens = 1 << 24;
    std::string source;               // file name for messages
    std::vector<std::string> tokens;  // id → text (byte-level form)
    std::unordered_map<std::string, int32_t> ids;
    std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a,b) → (rank, merged)
    std::vector<std::unique_ptr<Regex>> splits;          // applied in order, "Isolated"
    std::vector<std::pair<std::string, int32_t>> added;  // added/special tokens
    std::array<int32_t, 256> byte_ids{};
    int32_t bos = -1, eos = -1;

    void add_token(int32_t id, std::string text) {
        // The id indexes `tokens`: a negative one would write outside it, a huge one allocate
        // gigabytes. Real vocabularies are dense and under a million tokens.
        QL_CHECK(id >= 0 && id < kMaxTokens, "{}: token id {} for '{}' is outside [0, {})", source,
                 id, text, kMaxTokens);
        if (id >= static_cast<int32_t>(tokens.size())) tokens.resize(id + 1);
        ids.emplace(text, id);
        tokens[id] = std::move(text);
    }
    int32_t lookup(const std::string& s) const {
        auto it = ids.find(s);
        return it == ids.end() ? -1 : it->second;
    }
    void add_merge(const std::string& a, const std::string& b, int32_t rank) {
        const int32_t ia = lookup(a), ib = lookup(b), im = lookup(a + b);
        if (ia < 0 || ib < 0 || im < 0) return;  // cannot fire: its result is not a token
        const uint64_t key = (static_cast<uint64_t>(ia) << 32) | static_cast<uint32_t>(ib);
        merges.emplace(key, std::make_pair(rank, im));
    }
    void finish() {
        const ByteTable& table = byte_table();
        for (int b = 0; b < 256; ++b) {
            std::string s;
            append_utf8(s, table.to_cp[b]);
            byte_ids[b] = lookup(s);
        }
        // Longest first so that a token containing another wins at the same position.
        std::sort(added.begin(), added.end(),
                  [](const auto& x, const auto& y) { return x.first.size() > y.first.size(); });
    }

    void bpe(std::string_view piece, std::vector<int32_t>& out) const;
    void pretokenize_and_bpe(std::string_view text,
                             std::unordered_map<std::string, std::vector<int32_t>>& cache,
                             std::vector<int32_t>& out) const;
};

void Tokenizer::Impl::bpe(std::string_view piece, std::vector<int32_t>& out) const {
    std::vector<int32_t> sym;
    sym.reserve(piece.size());
    for (unsigned char c : piece) {
        QL_CHECK(byte_ids[c] >= 0, "{}: vocabulary has no token for byte 0x{:02x}", source, c);
        sym.push_back(byte_ids[c]);
    }
    // Repeatedly merge the lowest-ranked adjacent pair (leftmost on ties).
    while (sym.size() > 1) {
        int32_t best_rank = std::numeric_limits<int32_t>::max(), best_id = -1;
        size_t best_pos = 0;
        for (size_t i = 0; i + 1 < sym.size(); ++i) {
            const uint64_t key =
                (static_cast<uint64_t>(sym[i]) << 32) | static_cast<uint32_t>(sym[i + 1]);
            auto it = merges.find(key);
            if (it != merges.end() && it->second.first < best_rank) {
                best_rank = it->second.first;
                best_id = it->second.second;
                best_pos = i;
            }
        }
        if (best_id < 0) break;
        sym[best_pos] = best_id;
        sym.erase(sym.begin() + static_cast<ptrdiff_t>(best_pos) + 1);
    }
    out.insert(out.end(), sym.begin(), sym.end());
}

void Tokenizer::Impl::pretokenize_and_bpe(
    std::string_view text, std::unordered_map<std::string, std::vector<int32_t>>& cache,
    std::vector<int32_t>& out) const {
    // Pieces as (offset, length) into text; each split stage refines every piece.
    std::vector<std::pair<size_t, size_t>> pieces{{0, text.size()}}, next;
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
        std::string key(text.substr(start, len));
        auto it = cache.find(key);
        if (it == cache.end()) {
            std::vector<int32_t> ids_out;
            bpe(key, ids_out);
            it = cache.emplace(std::move(key), std::move(ids_out)).first;
        }
        out.insert(out.end(), it->second.begin(), it->second.end());
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
    std::unordered_map<std::string, std::vector<int32_t>> cache;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t hit = text.size(), hit_len = 0;
        int32_t hit_id = -1;
        if (parse_special) {
            for (const auto& [content, id] : im.added) {
                const size_t p = text.find(content, pos);
                if (p < hit) hit = p, hit_len = content.size(), hit_id = id;
            }
        }
        im.pretokenize_and_bpe(text.substr(pos, hit - pos), cache, out);
        if (hit_id < 0) break;
        out.push_back(hit_id);
        pos = hit + hit_len;
    }
    return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
    const ByteTable& table = byte_table();
    std::string out;
    for (int32_t id : ids) {
        const std::string& t = token_text(id);
        size_t i = 0;
        std::string bytes;
        bool byte_level = true;
        while (i < t.size()) {
            const unsigned char c = t[i];
            uint32_t cp;
            int n;
            if (c < 0x80)
                cp = c, n = 1;
            else if ((c >> 5) == 6)
                cp = c & 0x1f, n = 2;
            else if ((c >> 4) == 14)
                cp = c & 0x0f, n = 3;
            else
                cp = c & 0x07, n = 4;
            for (int k = 1; k < n && i + k < t.size(); ++k) cp = (cp << 6) | (t[i + k] & 0x3f);
            i += n;
            if (cp >= table.from_cp.size() || table.from_cp[cp] < 0) {
                byte_level = false;
                break;
            }
            bytes += static_cast<char>(table.from_cp[cp]);
        }
        out += byte_level ? bytes : t;
    }
    return out;
}

// ---- loaders ---------------------------------------------------------------------------

namespace {

using nlohmann::json;

void add_pretokenizer(Tokenizer::Impl& im, const json& pt, const std::string& path) {
    if (pt.is_null()) return;
    const std::string type = pt.value("type", "");
    if (type == "Sequence") {
        for (const json& p : pt.at("pretokenizers")) add_pretokenizer(im, p, path);
    } else if (type == "Split") {
        const std::string behavior = pt.value("behavior", "Isolated");
        QL_CHECK(behavior == "Isolated" && !pt.value("invert", false),
                 "{}: pre_tokenizer Split with behavior '{}' (invert {}) is not supported; "
                 "expected Isolated",
                 path, behavior, pt.value("invert", false));
        const json& pattern = pt.at("pattern");
        std::string regex;
        if (pattern.contains("Regex")) {
            regex = pattern.at("Regex").get<std::string>();
        } else {
            // A literal string: quote it for PCRE2.
            regex = "\\Q" + pattern.at("String").get<std::string>() + "\\E";
        }
        im.splits.push_back(std::make_unique<Regex>(regex, path));
    } else if (type == "ByteLevel") {
        QL_CHECK(!pt.value("add_prefix_space", false),
                 "{}: ByteLevel pre_tokenizer with add_prefix_space is not supported", path);
        if (pt.value("use_regex", true))
            im.splits.push_back(std::make_unique<Regex>(kGpt2PretokenizerRegex, path));
    } else {
        fail("{}: pre_tokenizer type '{}' is not supported (expected Split, ByteLevel, Sequence)",
             path, type);
    }
}

std::optional<std::string> special_content(const json& j, const char* key) {
    if (!j.contains(key) || j[key].is_null()) return std::nullopt;
    if (j[key].is_string()) return j[key].get<std::string>();
    if (j[key].is_object() && j[key].contains("content"))
        return j[key]["content"].get<std::string>();
    return std::nullopt;
}

json parse_json_file(const std::string& path) {
    try {
        return json::parse(read_text_file(path));
    } catch (const json::exception& e) {
        fail("{}: not valid JSON: {}", path, e.what());
    }
}

}  // namespace

Tokenizer Tokenizer::from_hf_json(const std::string& path) {
    namespace fs = std::filesystem;
    QL_CHECK(fs::exists(path), "missing tokenizer: {} does not exist", path);
    const json doc = parse_json_file(path);
    auto im = std::make_unique<Impl>();
    im->source = path;
    try {
        QL_CHECK(doc.contains("model"), "{}: no 'model' object", path);
        const json& model = doc.at("model");
        const std::string type = model.value("type", "BPE");
        QL_CHECK(type == "BPE", "{}: tokenizer model type '{}' is not supported (expected BPE)",
                 path, type);
        QL_CHECK(!model.value("byte_fallback", false),
                 "{}: byte_fallback BPE (SentencePiece style) is not supported", path);
        QL_CHECK(!doc.contains("normalizer") || doc["normalizer"].is_null(),
                 "{}: tokenizers with a normalizer are not supported", path);
        // A token id must be an integer that fits: converting 1e40 to int32 is undefined.
        auto token_id = [&](const json& id, const std::string& text) {
            QL_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 &&
                         id.get<int64_t>() < (int64_t{1} << 24),
                     "{}: token '{}' has id {}, expected an integer in [0, 2^24)", path, text,
                     id.dump());
            return static_cast<int32_t>(id.get<int64_t>());
        };
        for (const auto& [text, id] : model.at("vocab").items())
            im->add_token(token_id(id, text), text);
        for (const json& a : doc.value("added_tokens", json::array())) {
            const int32_t id = token_id(a.at("id"), a.value("content", std::string("?")));
            const std::string content = a.at("content").get<std::string>();
            im->add_token(id, content);
            im->added.emplace_back(content, id);
        }
        int32_t rank = 0;
        for (const json& m : model.at("merges")) {
            if (m.is_array()) {
                im->add_merge(m.at(0).get<std::string>(), m.at(1).get<std::string>(), rank++);
            } else {
                const std::string s = m.get<std::string>();
                const size_t sp = s.find(' ', 1);
                QL_CHECK(sp != std::string::npos, "{}: merge {} '{}' has no space", path, rank, s);
                im->add_merge(s.substr(0, sp), s.substr(sp + 1), rank++);
            }
        }
        add_pretokenizer(*im, doc.value("pre_tokenizer", json()), path);
    } catch (const json::exception& e) {
        fail("{}: unexpected tokenizer.json structure: {}", path, e.what());
    }
    // BOS/EOS: tokenizer_config.json names them; config.json gives ids as a fallback.
    const fs::path dir = fs::path(path).parent_path();
    if (fs::exists(dir / "tokenizer_config.json")) {
        const json cfg = parse_json_file((dir / "tokenizer_config.json").string());
        if (auto bos = special_content(cfg, "bos_token")) im->bos = im->lookup(*bos);
        if (auto eos = special_content(cfg, "eos_token")) im->eos = im->lookup(*eos);
    }
    if ((im->bos < 0 || im->eos < 0) && fs::exists(dir / "config.json")) {
        const json cfg = parse_json_file((dir / "config.json").string());
        auto small_id = [&](const char* key) {
            return cfg.contains(key) && cfg[key].is_number_integer() &&
                   cfg[key].get<int64_t>() >= 0 && cfg[key].get<int64_t>() < (int64_t{1} << 24);
        };
        if (im->bos < 0 && small_id("bos_token_id"))
            im->bos = static_cast<int32_t>(cfg["bos_token_id"].get<int64_t>());
        if (im->eos < 0 && small_id("eos_token_id"))
            im->eos = static_cast<int32_t>(cfg["eos_token_id"].get<int64_t>());
    }
    for (size_t i = 0; i < im->tokens.size(); ++i)
        QL_CHECK(!im->tokens[i].empty(), "{}: token id {} is missing from the vocabulary", path, i);
    im->finish();
    return Tokenizer(std::move(im));
}

Tokenizer Tokenizer::from_gguf(const GgufFile& gguf) {
    const std::string& path = gguf.path();
    const GgufValue* model = gguf.find("tokenizer.ggml.model");
    const GgufValue* tokens = gguf.find("tokenizer.ggml.tokens");
    QL_CHECK(model && tokens, "missing tokenizer: {} has no tokenizer.ggml.model/tokens", path);
    QL_CHECK(model->as_string() == "gpt2",
             "{}: tokenizer.ggml.model '{}' is not supported (expected gpt2 byte-level BPE)", path,
             model->as_string());
    auto im = std::make_unique<Impl>();
    im->source = path;
    const std::vector<std::string> texts = tokens->as_string_array();
    std::vector<int64_t> types;
    if (const GgufValue* t = gguf.find("tokenizer.ggml.token_type")) types = t->as_int_array();
    QL_CHECK(types.empty() || types.size() == texts.size(),
             "{}: tokenizer.ggml.token_type has {} entries, tokenizer.ggml.tokens has {}", path,
             types.size(), texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
        im->add_token(static_cast<int32_t>(i), texts[i]);
        // llama.cpp token types: 3 = control, 4 = user-defined (both matched as specials).
        if (!types.empty() && (types[i] == 3 || types[i] == 4))
            im->added.emplace_back(texts[i], static_cast<int32_t>(i));
    }
    if (const GgufValue* merges = gguf.find("tokenizer.ggml.merges")) {
        int32_t rank = 0;
        for (const std::string& s : merges->as_string_array()) {
            const size_t sp = s.find(' ', 1);
            QL_CHECK(sp != std::string::npos, "{}: tokenizer.ggml.merges[{}] '{}' has no space",
                     path, rank, s);
            im->add_merge(s.substr(0, sp), s.substr(sp + 1), rank++);
        }
    }
    const GgufValue* pre = gguf.find("tokenizer.ggml.pre");
    const std::string pre_name = pre ? pre->as_string() : "gpt2";
    if (pre_name == "llama-bpe" || pre_name == "llama3" || pre_name == "llama-v3" ||
        pre_name == "smaug-bpe") {
        im->splits.push_back(std::make_unique<Regex>(kLlama3PretokenizerRegex, path));
    } else if (pre_name == "gpt2" || pre_name == "gpt-2") {
        im->splits.push_back(std::make_unique<Regex>(kGpt2PretokenizerRegex, path));
    } else {
        fail("{}: tokenizer.ggml.pre '{}' is not supported (expected llama-bpe or gpt2)", path,
             pre_name);
    }
    const auto n = static_cast<int64_t>(texts.size());
    auto special_id = [&](const char* key) -> int32_t {
        const GgufValue* v = gguf.find(key);
        if (!v) return -1;
        const int64_t id = v->as_int();
        QL_CHECK(id >= 0 && id < n, "{}: {} = {} is outside the vocabulary of {} tokens", path, key,
                 id, n);
        return static_cast<int32_t>(id);
    };
    im->bos = special_id("tokenizer.ggml.bos_token_id");
    im->eos = special_id("tokenizer.ggml.eos_token_id");
    im->finish();
    return Tokenizer(std::move(im));
}

Tokenizer Tokenizer::load(const Model& model) {
    if (const GgufFile* gguf = model.gguf()) return from_gguf(*gguf);
    return from_hf_json(model.tokenizer_path());
}

}  // namespace quantlens
