#include "common/ip.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

namespace garda::common {
namespace {

uint64_t loadBe64(const uint8_t* p) noexcept {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

void storeBe64(uint64_t v, uint8_t* p) noexcept {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<uint8_t>(v);
    v >>= 8;
  }
}

}  // namespace

IpAddress IpAddress::fromV4Bytes(const uint8_t* b) noexcept {
  uint64_t lo = (0xffffULL << 32) | (uint64_t{b[0]} << 24) | (uint64_t{b[1]} << 16) |
                (uint64_t{b[2]} << 8) | uint64_t{b[3]};
  return IpAddress(0, lo);
}

IpAddress IpAddress::fromV6Bytes(const uint8_t* b) noexcept {
  return IpAddress(loadBe64(b), loadBe64(b + 8));
}

std::optional<IpAddress> IpAddress::fromBytes(std::span<const uint8_t> bytes) noexcept {
  if (bytes.size() == 4) return fromV4Bytes(bytes.data());
  if (bytes.size() == 16) return fromV6Bytes(bytes.data());
  return std::nullopt;
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  std::string s(text);
  uint8_t buf[16];
  if (inet_pton(AF_INET, s.c_str(), buf) == 1) return fromV4Bytes(buf);
  if (inet_pton(AF_INET6, s.c_str(), buf) == 1) return fromV6Bytes(buf);
  return std::nullopt;
}

size_t IpAddress::toBytes(uint8_t out[16]) const noexcept {
  if (isV4()) {
    uint32_t v = static_cast<uint32_t>(lo_);
    out[0] = static_cast<uint8_t>(v >> 24);
    out[1] = static_cast<uint8_t>(v >> 16);
    out[2] = static_cast<uint8_t>(v >> 8);
    out[3] = static_cast<uint8_t>(v);
    return 4;
  }
  storeBe64(hi_, out);
  storeBe64(lo_, out + 8);
  return 16;
}

std::string IpAddress::toString() const {
  uint8_t buf[16];
  char text[INET6_ADDRSTRLEN];
  size_t n = toBytes(buf);
  inet_ntop(n == 4 ? AF_INET : AF_INET6, buf, text, sizeof text);
  return text;
}

IpAddress IpAddress::masked(unsigned bits) const noexcept {
  if (bits >= 128) return *this;
  if (bits == 0) return IpAddress(0, 0);
  if (bits <= 64) {
    uint64_t mask = bits == 64 ? ~0ULL : ~0ULL << (64 - bits);
    return IpAddress(hi_ & mask, 0);
  }
  return IpAddress(hi_, lo_ & (~0ULL << (128 - bits)));
}

std::optional<Prefix> Prefix::make(const IpAddress& address, unsigned length) {
  unsigned max = address.isV4() ? 32 : 128;
  if (length > max) return std::nullopt;
  Prefix p;
  p.length_ = length;
  p.address_ = address.masked(address.isV4() ? length + 96 : length);
  return p;
}

std::optional<Prefix> Prefix::parse(std::string_view text, bool strict) {
  auto slash = text.find('/');
  auto address = IpAddress::parse(text.substr(0, slash));
  if (!address) return std::nullopt;
  unsigned max = address->isV4() ? 32 : 128;
  unsigned length = max;
  if (slash != std::string_view::npos) {
    auto digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3) return std::nullopt;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), length);
    if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  }
  auto p = make(*address, length);
  if (!p) return std::nullopt;
  if (strict && p->address() != *address) return std::nullopt;
  return p;
}

bool Prefix::contains(const IpAddress& a) const noexcept {
  if (a.isV4() != address_.isV4()) return false;
  return a.masked(length128()) == address_;
}

bool Prefix::overlaps(const Prefix& other) const noexcept {
  if (address_.isV4() != other.address_.isV4()) return false;
  return length_ <= other.length_ ? contains(other.address_) : other.contains(address_);
}

std::string Prefix::toString() const {
  return address_.toString() + "/" + std::to_string(length_);
}

PrefixSet::PrefixSet(const std::vector<Prefix>& prefixes) {
  for (const auto& p : prefixes) add(p);
}

void PrefixSet::add(const Prefix& prefix) {
  if (std::find(prefixes_.begin(), prefixes_.end(), prefix) != prefixes_.end()) return;
  prefixes_.push_back(prefix);
  unsigned len = prefix.length128();
  auto it = std::find(lengths_.begin(), lengths_.end(), len);
  size_t index;
  if (it == lengths_.end()) {
    auto pos = std::find_if(lengths_.begin(), lengths_.end(), [&](unsigned l) { return l < len; });
    index = static_cast<size_t>(pos - lengths_.begin());
    lengths_.insert(pos, len);
    byLength_.emplace(byLength_.begin() + static_cast<std::ptrdiff_t>(index));
  } else {
    index = static_cast<size_t>(it - lengths_.begin());
  }
  byLength_[index].insert(prefix.address());
}

std::optional<Prefix> PrefixSet::longestMatch(const IpAddress& a) const {
  // IPv4 prefixes live at 128-bit lengths >= 96 (under the ::ffff: marker) and
  // IPv6 prefixes never carry that marker, so an IPv4 address may only match
  // lengths >= 96 and an IPv6 address can never equal a stored IPv4 prefix.
  const bool v4 = a.isV4();
  for (size_t i = 0; i < lengths_.size(); ++i) {
    unsigned len = lengths_[i];
    if (v4 && len < 96) break;
    if (byLength_[i].count(a.masked(len)) != 0) return Prefix::make(a, v4 ? len - 96 : len);
  }
  return std::nullopt;
}

bool PrefixSet::overlaps(const Prefix& p) const {
  return std::any_of(prefixes_.begin(), prefixes_.end(),
                     [&](const Prefix& q) { return q.overlaps(p); });
}

}  // namespace garda::common
