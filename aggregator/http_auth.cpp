#include "aggregator/http_auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <stdexcept>

#include "common/hex.h"

namespace garda::aggregator {
namespace {

std::array<unsigned char, 32> sha256(std::string_view data) {
  std::array<unsigned char, 32> out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1 ||
      len != out.size())
    throw std::runtime_error("sha256: OpenSSL EVP_Digest failed");
  return out;
}

}  // namespace

std::string sha256Hex(std::string_view data) {
  auto d = sha256(data);
  return common::toHex(d.data(), d.size());
}

std::string newToken() {
  std::array<unsigned char, 32> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1)
    throw std::runtime_error("token: OpenSSL RAND_bytes failed");
  return "garda_" + common::toHex(bytes.data(), bytes.size());
}

TokenAuth::TokenAuth(const std::vector<common::TokenEntry>& tokens) {
  for (const auto& t : tokens) {
    // The config loader has checked 64 hex digits.
    std::string digest(32, '\0');
    for (size_t i = 0; i < 32 && 2 * i + 1 < t.sha256.size(); ++i)
      digest[i] = static_cast<char>(common::hexValue(t.sha256[2 * i]) * 16 + common::hexValue(t.sha256[2 * i + 1]));
    entries_.push_back({std::move(digest), {t.name, t.role}});
  }
}

std::optional<TokenIdentity> TokenAuth::check(std::string_view token) const {
  if (token.empty()) return std::nullopt;
  auto d = sha256(token);
  const Entry* found = nullptr;
  for (const auto& e : entries_)
    if (CRYPTO_memcmp(d.data(), e.digest.data(), d.size()) == 0 && !found) found = &e;
  if (!found) return std::nullopt;
  return found->who;
}

std::string_view TokenAuth::bearer(std::string_view header) {
  constexpr std::string_view kScheme = "Bearer ";
  if (header.size() <= kScheme.size()) return {};
  for (size_t i = 0; i < kScheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(header[i])) !=
        std::tolower(static_cast<unsigned char>(kScheme[i])))
      return {};
  auto t = header.substr(kScheme.size());
  while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
  while (!t.empty() && (t.back() == ' ' || t.back() == '\r')) t.remove_suffix(1);
  return t;
}

}  // namespace garda::aggregator
