#pragma once

#include <cstdint>
#include <string>

#include "sensor/enforce/enforcer.h"

namespace garda::sensor {

struct ExecCounters {
  uint64_t runs = 0;
  uint64_t failures = 0;  // non-zero exit, killed by a signal, or could not start
  uint64_t timeouts = 0;  // killed after enforce.exec_timeout_ms
};

// Hands each rule to an operator's program, for a gateway or appliance that
// Garda cannot program itself: `<command> add` or `<command> remove`, with
// the rule as one JSON object (Rule::toJson) on standard input. Run with
// posix_spawn, no shell, no PATH lookup, stdin/stdout/stderr on pipes, the
// sensor's environment. Exit status 0 means done; anything else is a
// rejection whose reason is the first line of the program's stderr (at most
// 200 bytes). A program still running after the timeout is killed with its
// process group (SIGKILL) and the rule rejected with "timed out". What it prints on stdout is
// logged.
//
// The program, not the sensor, must make the rule expire on the device if
// the sensor dies (the rule's absolute expiry is in the JSON). The sensor
// calls `remove` when a rule expires or is withdrawn. Single-threaded; each
// call blocks until the program exits or is killed.
class ExecEnforcer final : public Enforcer {
 public:
  ExecEnforcer(std::string command, unsigned timeoutMs);

  const char* name() const noexcept override { return "exec"; }
  std::string apply(const Rule& rule) override;
  std::string remove(const Rule& rule) override;
  uint64_t packetsDropped(const Rule&) override { return 0; }

  const ExecCounters& counters() const noexcept { return counters_; }

 private:
  std::string run(const char* verb, const Rule& rule);

  std::string command_;
  unsigned timeoutMs_;
  ExecCounters counters_;
};

}  // namespace garda::sensor
