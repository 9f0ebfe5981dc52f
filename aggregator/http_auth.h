#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"

namespace garda::aggregator {

// SHA-256 of `data` as 64 lowercase hex digits.
std::string sha256Hex(std::string_view data);

// A fresh bearer token: 32 random bytes (OpenSSL's RAND_bytes) as 64 hex
// digits, prefixed "garda_" so it is recognisable in a leak scan.
std::string newToken();

// Who a bearer token belongs to.
struct TokenIdentity {
  std::string name;
  common::Role role = common::Role::kViewer;
};

// The HTTP API's bearer tokens: only their SHA-256 is kept (from [[token]]
// in aggregator.toml). A presented token is hashed and compared with every
// entry in constant time (CRYPTO_memcmp, no early exit), so the time taken
// says nothing about which entry, or how much of one, matched.
class TokenAuth {
 public:
  explicit TokenAuth(const std::vector<common::TokenEntry>& tokens);

  // The token's owner, or nullopt for an unknown token.
  std::optional<TokenIdentity> check(std::string_view token) const;
  // The token in an `Authorization: Bearer TOKEN` header value; "" if the
  // header is not of that form.
  static std::string_view bearer(std::string_view header);
  size_t size() const noexcept { return entries_.size(); }

 private:
  struct Entry {
    std::string digest;  // 32 raw bytes
    TokenIdentity who;
  };
  std::vector<Entry> entries_;
};

}  // namespace garda::aggregator
