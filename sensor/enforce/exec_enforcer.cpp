#include "sensor/enforce/exec_enforcer.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/clock.h"

extern char** environ;

namespace garda::sensor {
namespace {

constexpr size_t kMaxCaptured = 4096;  // of stdout and of stderr each
constexpr size_t kMaxReason = 200;

// Closes what it holds on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

// Reads what is there without blocking; false at end of file.
bool drain(int fd, std::string& into) {
  char buf[1024];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      into.append(buf, std::min(static_cast<size_t>(n),
                                kMaxCaptured - std::min(kMaxCaptured, into.size())));
      continue;
    }
    if (n == 0) return false;
    return errno == EAGAIN || errno == EINTR;
  }
}

std::string firstLine(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  if (line.size() > kMaxReason) line = line.substr(0, kMaxReason) + "...";
  return line;
}

}  // namespace

ExecEnforcer::ExecEnforcer(std::string command, unsigned timeoutMs)
    : command_(std::move(command)), timeoutMs_(timeoutMs) {}

std::string ExecEnforcer::apply(const Rule& rule) {
  return run("add", rule);
}
std::string ExecEnforcer::remove(const Rule& rule) {
  return run("remove", rule);
}

std::string ExecEnforcer::run(const char* verb, const Rule& rule) {
  counters_.runs++;
  const std::string input = rule.toJson().dump() + "\n";
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
  Fd inR{in[0]}, inW{in[1]};
  if (::pipe2(out, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
  Fd outR{out[0]}, outW{out[1]};
  if (::pipe2(err, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
  Fd errR{err[0]}, errW{err[1]};

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, inR.fd, 0);
  posix_spawn_file_actions_adddup2(&actions, outW.fd, 1);
  posix_spawn_file_actions_adddup2(&actions, errW.fd, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, pipeOnly;
  sigemptyset(&none);
  sigemptyset(&pipeOnly);
  sigaddset(&pipeOnly, SIGPIPE);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &pipeOnly);
  // Its own process group, so that a timeout kills what it started too.
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  std::string path = command_;
  char* argv[] = {path.data(), const_cast<char*>(verb), nullptr};
  pid_t pid = 0;
  int rc = posix_spawn(&pid, path.c_str(), &actions, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    counters_.failures++;
    return "cannot run " + command_ + ": " + std::strerror(rc);
  }
  inR.reset();
  outW.reset();
  errW.reset();
  for (int fd : {inW.fd, outR.fd, errR.fd}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);

  // A program that exits without reading its input must not kill the sensor
  // with SIGPIPE: block it for this thread, and take back any that arrived.
  sigset_t old;
  pthread_sigmask(SIG_BLOCK, &pipeOnly, &old);
  std::string stdoutText, stderrText;
  size_t written = 0;
  bool outOpen = true, errOpen = true;
  int status = 0;
  bool exited = false;
  const int64_t deadline = common::monoNowNs() + int64_t{timeoutMs_} * 1'000'000;
  while (!exited) {
    if (inW.fd >= 0 && written < input.size()) {
      ssize_t n = ::write(inW.fd, input.data() + written, input.size() - written);
      if (n > 0)
        written += static_cast<size_t>(n);
      else if (n < 0 && errno != EAGAIN && errno != EINTR)
        written = input.size();
    }
    if (inW.fd >= 0 && written >= input.size()) inW.reset();
    pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) exited = true;
    if (outOpen) outOpen = drain(outR.fd, stdoutText);
    if (errOpen) errOpen = drain(errR.fd, stderrText);
    if (exited) break;
    const int64_t left = deadline - common::monoNowNs();
    if (left <= 0) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      counters_.timeouts++;
      counters_.failures++;
      return "timed out after " + std::to_string(timeoutMs_) + " ms (killed)";
    }
    pollfd fds[3];
    nfds_t n = 0;
    if (inW.fd >= 0) fds[n++] = {inW.fd, POLLOUT, 0};
    if (outOpen) fds[n++] = {outR.fd, POLLIN, 0};
    if (errOpen) fds[n++] = {errR.fd, POLLIN, 0};
    // With every pipe closed, only the exit is left to wait for: poll short.
    int waitMs = static_cast<int>(std::min<int64_t>(left / 1'000'000 + 1, n ? 50 : 5));
    ::poll(fds, n, waitMs);
  }
  timespec zero{0, 0};
  while (sigtimedwait(&pipeOnly, nullptr, &zero) > 0) {
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);

  if (!stdoutText.empty())
    spdlog::info("enforce (exec): {} {} [order {}]: {}", command_, verb, rule.id,
                 firstLine(stdoutText));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  counters_.failures++;
  std::string why = WIFSIGNALED(status)
                        ? std::string("killed by signal ") + std::to_string(WTERMSIG(status))
                        : "exit status " + std::to_string(WEXITSTATUS(status));
  std::string line = firstLine(stderrText);
  return line.empty() ? command_ + " " + verb + ": " + why : line + " (" + why + ")";
}

}  // namespace garda::sensor
