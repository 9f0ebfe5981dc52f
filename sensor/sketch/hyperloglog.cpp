#include "sensor/sketch/hyperloglog.h"

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

namespace garda::sensor {
namespace {

// sigma(x) = x + sum_{k>=1} x^(2^k) 2^(k-1), Ertl (2017) eq. 36: the
// correction for registers still at zero.
double sigma(double x) {
  if (x == 1.0) return std::numeric_limits<double>::infinity();
  double y = 1.0;
  double z = x;
  double previous = 0.0;
  do {
    x *= x;
    previous = z;
    z += x * y;
    y += y;
  } while (z != previous);
  return z;
}

// tau(x) = (1 - x - sum_{k>=1} (1 - x^(2^-k))^2 2^-k) / 3, Ertl (2017)
// eq. 39: the correction for registers saturated at 65 - precision.
double tau(double x) {
  if (x == 0.0 || x == 1.0) return 0.0;
  double y = 1.0;
  double z = 1.0 - x;
  double previous = 0.0;
  do {
    x = std::sqrt(x);
    previous = z;
    y *= 0.5;
    z -= (1.0 - x) * (1.0 - x) * y;
  } while (z != previous);
  return z / 3.0;
}

// dst[i] = max(dst[i], src[i]) for n a multiple of 16. The distinct buffers
// and the fixed inner trip count let it vectorise under -O2's cheap cost model.
void maxInto(uint8_t* __restrict dst, const uint8_t* __restrict src, size_t n) {
  for (size_t block = 0; block < n; block += 16) {
    for (size_t i = block; i < block + 16; ++i) dst[i] = std::max(dst[i], src[i]);
  }
}

}  // namespace

HyperLogLog::HyperLogLog(unsigned precision) : precision_(precision) {
  if (precision < kMinPrecision || precision > kMaxPrecision) {
    throw std::invalid_argument("HyperLogLog precision must be between 4 and 16, got " +
                                std::to_string(precision));
  }
  registers_.assign(size_t{1} << precision, 0);
}

uint64_t HyperLogLog::estimate() const {
  const unsigned q = 64 - precision_;
  const double m = static_cast<double>(registers_.size());
  // Four partial histograms: a sketch's registers mostly share a few values,
  // and incrementing one counter back to back serialises on the store.
  std::array<std::array<uint32_t, 66>, 4> partial{};
  const uint8_t* r = registers_.data();
  for (size_t i = 0; i < registers_.size(); i += 4) {
    ++partial[0][r[i]];
    ++partial[1][r[i + 1]];
    ++partial[2][r[i + 2]];
    ++partial[3][r[i + 3]];
  }
  std::array<uint32_t, 66> histogram{};
  for (size_t v = 0; v < histogram.size(); ++v) {
    histogram[v] = partial[0][v] + partial[1][v] + partial[2][v] + partial[3][v];
  }
  if (histogram[0] == registers_.size()) return 0;

  // Ertl (2017), algorithm 6: the improved raw estimator
  // alpha_inf m^2 / (m sigma(C0/m) + sum_k C_k 2^-k + m tau(1 - C_{q+1}/m) 2^-q),
  // the sum evaluated Horner-style from the top register value down.
  double z = m * tau(1.0 - histogram[q + 1] / m);
  for (unsigned k = q; k >= 1; --k) z = 0.5 * (z + histogram[k]);
  z += m * sigma(histogram[0] / m);
  const double alphaInf = 1.0 / (2.0 * std::log(2.0));
  const double e = std::round(alphaInf * m * m / z);
  // Every register saturated (z == 0): more keys than 64-bit hashes can tell.
  constexpr double kTwoTo64 = 18446744073709551616.0;
  if (!(e < kTwoTo64)) return std::numeric_limits<uint64_t>::max();
  return static_cast<uint64_t>(e);
}

void HyperLogLog::merge(const HyperLogLog& other) {
  if (other.precision_ != precision_) {
    throw std::invalid_argument("HyperLogLog merge needs equal precisions, got " +
                                std::to_string(precision_) + " and " +
                                std::to_string(other.precision_));
  }
  maxInto(registers_.data(), other.registers_.data(), registers_.size());
}

void HyperLogLog::mergeRegisters(std::span<const uint8_t> registers) {
  if (registers.size() != registers_.size())
    throw std::invalid_argument("HyperLogLog registers: expected " +
                                std::to_string(registers_.size()) + ", got " +
                                std::to_string(registers.size()));
  maxInto(registers_.data(), registers.data(), registers_.size());
}

void HyperLogLog::reset() noexcept {
  std::memset(registers_.data(), 0, registers_.size());
}

}  // namespace garda::sensor
