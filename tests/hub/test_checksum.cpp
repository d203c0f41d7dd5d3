// Building blocks of the Hub client: digests (against published vectors, git and
// coreutils), environment lookup, token redaction, file selection, retry timing.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "hub/checksum.h"
#include "hub/env.h"
#include "hub/http.h"
#include "hub/repo.h"
#include "support/test_data.h"

namespace quantlens::hub {
namespace {

using quantlens::test_support::shared_dir;

TEST(Checksum, Sha256MatchesPublishedVectors) {
    // FIPS 180-2 examples.
    EXPECT_EQ(sha256_hex("abc", 3),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(sha256_hex("", 0),
              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    // Streaming in pieces gives the same digest as one call.
    const std::string s = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    Digest d(Digest::Kind::sha256);
    for (size_t i = 0; i < s.size(); i += 7)
        d.update(s.data() + i, std::min<size_t>(7, s.size() - i));
    EXPECT_EQ(d.hex(), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Checksum, GitBlobIdMatchesGitHashObject) {
    // `printf 'hello world\n' | git hash-object --stdin`
    Digest d(Digest::Kind::git_blob_sha1, 12);
    d.update("hello world\n", 12);
    EXPECT_EQ(d.hex(), "3b18e512dba79e4c8300dd08aeb37f8e728b8dad");
}

TEST(Checksum, FileDigestMatchesCoreutils) {
    const std::string path = shared_dir() + "/models/llama-8m/model-00002-of-00002.safetensors";
    std::FILE* p = ::popen(("sha256sum '" + path + "'").c_str(), "r");
    ASSERT_NE(p, nullptr);
    char buf[65] = {0};
    ASSERT_EQ(std::fread(buf, 1, 64, p), 64u);
    ::pclose(p);
    EXPECT_EQ(sha256_file(path), std::string(buf));
    EXPECT_THROW(sha256_file(shared_dir() + "/no-such-file"), Error);
}

TEST(Env, CacheEndpointAndTokenFollowHuggingFaceHub) {
    for (const char* v :
         {"HF_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE", "HF_ENDPOINT", "XDG_CACHE_HOME"})
        ::unsetenv(v);
    ::setenv("HF_HOME", "/tmp/ql-hf-home-that-does-not-exist", 1);
    EXPECT_EQ(hub_cache_dir(), "/tmp/ql-hf-home-that-does-not-exist/hub");
    ::setenv("HF_HUB_CACHE", "/somewhere/hub", 1);
    EXPECT_EQ(hub_cache_dir(), "/somewhere/hub");
    EXPECT_EQ(hub_cache_dir("/explicit"), "/explicit");
    ::unsetenv("HF_HUB_CACHE");
    ::unsetenv("HF_HOME");
    ::setenv("HOME", "/home/u", 1);
    EXPECT_EQ(hub_cache_dir(), "/home/u/.cache/huggingface/hub");

    EXPECT_EQ(hub_endpoint(), "https://huggingface.co");
    ::setenv("HF_ENDPOINT", "https://hf-mirror.example/", 1);
    EXPECT_EQ(hub_endpoint(), "https://hf-mirror.example");
    ::unsetenv("HF_ENDPOINT");

    EXPECT_EQ(resolve_token(), "");
    ::setenv("HF_TOKEN", " hf_env \n", 1);
    EXPECT_EQ(resolve_token(), "hf_env");
    EXPECT_EQ(resolve_token("hf_flag"), "hf_flag");
    ::unsetenv("HF_TOKEN");
}

TEST(Env, RedactReplacesEveryOccurrence) {
    EXPECT_EQ(redact_token("a hf_X b hf_X", "hf_X"), "a hf_*** b hf_***");
    EXPECT_EQ(redact_token("nothing", ""), "nothing");
}

TEST(Repo, IdsFoldersAndUrls) {
    EXPECT_NO_THROW(check_repo_id("meta-llama/Llama-3.1-8B"));
    EXPECT_NO_THROW(check_repo_id("gpt2"));
    EXPECT_THROW(check_repo_id("a/b/c"), Error);
    EXPECT_THROW(check_repo_id("../etc"), Error);
    EXPECT_THROW(check_repo_id("org/"), Error);
    EXPECT_EQ(repo_folder_name("meta-llama/Llama-3.1-8B"), "models--meta-llama--Llama-3.1-8B");
    EXPECT_EQ(file_url("https://hf.co", "o/n", "refs/pr/1", "sub dir/a+b.json"),
              "https://hf.co/o/n/resolve/refs%2Fpr%2F1/sub%20dir/a%2Bb.json");
}

TEST(Repo, DefaultSelectionIsWhatASafetensorsModelNeeds) {
    RepoInfo info;
    info.repo_id = "o/n";
    for (const char* p :
         {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
          "special_tokens_map.json", "README.md", "model-00001-of-00002.safetensors",
          "model-00002-of-00002.safetensors", "model.safetensors.index.json",
          "original/consolidated.00.pth", "original/model.safetensors", ".gitattributes",
          "model-Q4_K_M.gguf", "consolidated.safetensors", "params.json"}) {
        info.files.push_back({p, 10, std::string(40, 'a'), ""});
    }
    std::vector<std::string> got;
    for (const auto& f : select_files(info, {})) got.push_back(f.path);
    EXPECT_EQ(
        got, (std::vector<std::string>{
                 "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "model-00001-of-00002.safetensors",
                 "model-00002-of-00002.safetensors", "model.safetensors.index.json"}));
    // Only consolidated weights: those are the model.
    RepoInfo mistral;
    mistral.files = {{"consolidated.safetensors", 10, std::string(40, 'a'), ""},
                     {"params.json", 10, std::string(40, 'b'), ""}};
    EXPECT_EQ(select_files(mistral, {}).size(), 1u);
    got.clear();
    for (const auto& f : select_files(info, {"*Q4_K_M.gguf", "original/*"})) got.push_back(f.path);
    EXPECT_EQ(got, (std::vector<std::string>{"original/consolidated.00.pth",
                                             "original/model.safetensors", "model-Q4_K_M.gguf"}));
}

TEST(Http, RetryDelayBacksOffAndHonoursRetryAfter) {
    RetryPolicy p;
    p.max_retries = 4;
    p.base_seconds = 0.5;
    p.max_wait_seconds = 3;
    HttpResponse r;
    r.status = 429;
    EXPECT_DOUBLE_EQ(retry_delay(r, 0, p), 0.5);
    EXPECT_DOUBLE_EQ(retry_delay(r, 2, p), 2.0);
    EXPECT_DOUBLE_EQ(retry_delay(r, 3, p), 3.0);  // capped
    EXPECT_LT(retry_delay(r, 4, p), 0);           // out of retries
    r.headers["retry-after"] = "2";
    EXPECT_DOUBLE_EQ(retry_delay(r, 0, p), 2.0);
    r.status = 503;
    EXPECT_DOUBLE_EQ(retry_delay(r, 0, p), 2.0);
    for (long s : {400L, 401L, 403L, 404L, 416L}) {
        r.status = s;
        EXPECT_LT(retry_delay(r, 0, p), 0) << s;
    }
    r = HttpResponse{};
    r.curl_code = 18;  // CURLE_PARTIAL_FILE: a dropped connection
    EXPECT_DOUBLE_EQ(retry_delay(r, 1, p), 1.0);
    r.curl_code = 23;  // CURLE_WRITE_ERROR: our own sink refused (disk full)
    EXPECT_LT(retry_delay(r, 0, p), 0);
}

}  // namespace
}  // namespace quantlens::hub
