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
  double previous;
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
  double previous;
  do {
    x = std::sqrt(x);
    previous = z;
    y *= 0.5;
    z -= (1.0 - x) * (1.0 - x) * y;
  } while (z != previous);
  return z / 3.0;
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
  std::array<uint32_t, 66> histogram{};
  for (uint8_t r : registers_) ++histogram[r];
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
  for (size_t i = 0; i < registers_.size(); ++i) {
    registers_[i] = std::max(registers_[i], other.registers_[i]);
  }
}

void HyperLogLog::reset() noexcept { std::memset(registers_.data(), 0, registers_.size()); }

}  // namespace garda::sensor
