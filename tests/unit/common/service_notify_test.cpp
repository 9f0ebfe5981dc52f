// ServiceNotifier against a real AF_UNIX datagram socket standing in for
// systemd's notification socket (NOTIFY_SOCKET), as sd_notify(3) uses it.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/service_notify.h"

namespace garda::common {
namespace {

class FakeServiceManager : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() /
            ("garda-notify-test-" + std::to_string(::getpid()) + ".sock");
    std::filesystem::remove(path_);
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd_, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
    ASSERT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    timeval tv{0, 200000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setenv("NOTIFY_SOCKET", path_.c_str(), 1);
    ::unsetenv("WATCHDOG_USEC");
    ::unsetenv("WATCHDOG_PID");
  }
  void TearDown() override {
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("WATCHDOG_USEC");
    ::unsetenv("WATCHDOG_PID");
    ::close(fd_);
    std::filesystem::remove(path_);
  }
  // The next datagram, or "" if none comes within 200 ms.
  std::string next() {
    char buf[512];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  }

  std::filesystem::path path_;
  int fd_ = -1;
};

TEST_F(FakeServiceManager, ReadyStatusReloadAndStoppingReachTheManager) {
  ServiceNotifier n;
  EXPECT_FALSE(n.watchdogEnabled());
  n.ready("listening");
  EXPECT_EQ(next(), "READY=1\nSTATUS=listening");
  n.status("3 of 4 sensors up");
  EXPECT_EQ(next(), "STATUS=3 of 4 sensors up");
  n.reloading();
  EXPECT_EQ(next(), "RELOADING=1\nSTATUS=reloading the configuration");
  n.reloaded("2 of 3 sensors up");
  EXPECT_EQ(next(), "READY=1\nSTATUS=2 of 3 sensors up");
  n.stopping();
  EXPECT_EQ(next(), "STOPPING=1\nSTATUS=stopping");
  n.keepAlive(1);
  EXPECT_EQ(next(), "") << "no watchdog configured: no keep-alives";
}

TEST_F(FakeServiceManager, KeepAlivesAtHalfTheWatchdogInterval) {
  ::setenv("WATCHDOG_USEC", "4000000", 1);
  ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
  ServiceNotifier n;
  ASSERT_TRUE(n.watchdogEnabled());
  EXPECT_EQ(n.pingEveryNs(), 2'000'000'000);
  const int64_t t0 = 10'000'000'000;
  n.keepAlive(t0);
  EXPECT_EQ(next(), "WATCHDOG=1");
  n.keepAlive(t0 + 1'999'999'999);
  EXPECT_EQ(next(), "") << "the next keep-alive is due after half the interval";
  n.keepAlive(t0 + 2'000'000'000);
  EXPECT_EQ(next(), "WATCHDOG=1");
}

TEST_F(FakeServiceManager, AWatchdogMeantForAnotherProcessIsIgnored) {
  ::setenv("WATCHDOG_USEC", "4000000", 1);
  ::setenv("WATCHDOG_PID", std::to_string(::getpid() + 1).c_str(), 1);
  ServiceNotifier n;
  EXPECT_FALSE(n.watchdogEnabled());
}

TEST(ServiceNotifierOutsideSystemd, EveryCallIsANoOp) {
  ::unsetenv("NOTIFY_SOCKET");
  ServiceNotifier n;
  EXPECT_FALSE(n.watchdogEnabled());
  n.ready("x");
  n.keepAlive(1);
  n.stopping();
}

}  // namespace
}  // namespace garda::common
