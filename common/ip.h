#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace garda::common {

// An IPv4 or IPv6 address. IPv4 is held as an IPv4-mapped IPv6 address
// (::ffff:a.b.c.d) so that one 128-bit representation, one hash and one prefix
// set serve both families; isV4() tells them apart again. A value type, cheap
// to copy (two 64-bit words, host order, most significant first).
class IpAddress {
 public:
  IpAddress() = default;

  static IpAddress fromV4Bytes(const uint8_t* bytes) noexcept;
  static IpAddress fromV6Bytes(const uint8_t* bytes) noexcept;
  // 4 or 16 bytes in network order; nullopt for any other size.
  static std::optional<IpAddress> fromBytes(std::span<const uint8_t> bytes) noexcept;
  // "198.18.2.1" or "2001:db8::1"; nullopt when it is neither.
  static std::optional<IpAddress> parse(std::string_view text);

  bool isV4() const noexcept { return hi_ == 0 && (lo_ >> 32) == 0xffffULL; }
  uint64_t hi() const noexcept { return hi_; }
  uint64_t lo() const noexcept { return lo_; }

  // Network-order bytes: 4 for IPv4, 16 for IPv6. Returns the count written.
  size_t toBytes(uint8_t out[16]) const noexcept;
  std::string toString() const;

  // Keeps the top `bits` of the 128-bit form; the rest become zero.
  IpAddress masked(unsigned bits) const noexcept;

  auto operator<=>(const IpAddress&) const = default;

 private:
  IpAddress(uint64_t hi, uint64_t lo) : hi_(hi), lo_(lo) {}
  uint64_t hi_ = 0;
  uint64_t lo_ = 0;
};

struct IpAddressHash {
  size_t operator()(const IpAddress& a) const noexcept {
    // splitmix64 finaliser over both words: cheap and well spread.
    uint64_t x = a.hi() * 0x9e3779b97f4a7c15ULL ^ a.lo();
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return static_cast<size_t>(x);
  }
};

// An address prefix ("198.18.2.0/24", "2001:db8::/32"). Invariant: the
// address has no bits set past the prefix length. length() is in the
// address's own family (0..32 for IPv4, 0..128 for IPv6).
class Prefix {
 public:
  Prefix() = default;
  // Fails (nullopt) on a bad address, a bad length, or host bits set past the
  // length when `strict` (config wants "198.18.2.0/24", not "198.18.2.1/24").
  static std::optional<Prefix> parse(std::string_view text, bool strict = true);
  static std::optional<Prefix> make(const IpAddress& address, unsigned length);

  const IpAddress& address() const noexcept { return address_; }
  unsigned length() const noexcept { return length_; }
  // Length in the 128-bit form (IPv4 lengths + 96).
  unsigned length128() const noexcept { return address_.isV4() ? length_ + 96 : length_; }
  bool contains(const IpAddress& a) const noexcept;
  // True when the two prefixes share any address.
  bool overlaps(const Prefix& other) const noexcept;
  std::string toString() const;

  auto operator<=>(const Prefix&) const = default;

 private:
  IpAddress address_;
  unsigned length_ = 0;
};

// A set of prefixes answering longest-prefix-match queries. Built once (at
// startup or on a config reload), then read-only: lookups are safe from many
// threads and never allocate. One hash set per prefix length present, probed
// from the longest length down: fast when few distinct lengths are in use,
// which is the case for protected and never-block lists.
class PrefixSet {
 public:
  PrefixSet() = default;
  explicit PrefixSet(const std::vector<Prefix>& prefixes);

  void add(const Prefix& prefix);
  // The longest prefix holding `a`, if any.
  std::optional<Prefix> longestMatch(const IpAddress& a) const;
  bool contains(const IpAddress& a) const { return longestMatch(a).has_value(); }
  // True when any member overlaps `p` (p inside a member, or a member inside p).
  bool overlaps(const Prefix& p) const;
  bool empty() const noexcept { return prefixes_.empty(); }
  const std::vector<Prefix>& prefixes() const noexcept { return prefixes_; }

 private:
  std::vector<Prefix> prefixes_;
  // lengths_ holds the 128-bit lengths present, longest first; byLength_[i]
  // holds the masked addresses of that length.
  std::vector<unsigned> lengths_;
  std::vector<std::unordered_set<IpAddress, IpAddressHash>> byLength_;
};

}  // namespace garda::common
