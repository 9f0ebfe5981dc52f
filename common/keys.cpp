#include "common/keys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace garda::common {
namespace {

constexpr size_t kZ85KeyLength = 40;

bool isZ85Key(const std::string& s) {
  static constexpr std::string_view kAlphabet =
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
  if (s.size() != kZ85KeyLength) return false;
  for (char c : s)
    if (kAlphabet.find(c) == std::string_view::npos) return false;
  return true;
}

void writeFileExclusive(const std::string& path, const std::string& content, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) throw std::runtime_error(path + ": cannot create: " + std::strerror(errno));
  // The umask may have narrowed the mode; set exactly what was asked.
  ::fchmod(fd, mode);
  ssize_t n = ::write(fd, content.data(), content.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(content.size()))
    throw std::runtime_error(path + ": cannot write: " + std::strerror(err));
}

}  // namespace

CurveKeyPair generateCurveKeyPair() {
  char pub[kZ85KeyLength + 1];
  char sec[kZ85KeyLength + 1];
  if (zmq_curve_keypair(pub, sec) != 0)
    throw std::runtime_error(std::string("cannot make a CURVE key pair: ") +
                             zmq_strerror(zmq_errno()));
  return {pub, sec};
}

std::string curvePublicFromSecret(const std::string& secretZ85) {
  if (!isZ85Key(secretZ85)) throw std::runtime_error("not a 40-character Z85 CURVE key");
  char pub[kZ85KeyLength + 1];
  if (zmq_curve_public(pub, secretZ85.c_str()) != 0)
    throw std::runtime_error(std::string("cannot derive the public key: ") +
                             zmq_strerror(zmq_errno()));
  return pub;
}

std::string readCurveKeyFile(const std::string& path, bool isSecret) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw std::runtime_error(path + ": cannot read key file: " + std::strerror(errno));
  if (isSecret && (st.st_mode & 0007) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%03o", st.st_mode & 0777);
    throw std::runtime_error(path + ": secret key file is readable by others (mode " + mode +
                             "); chmod 600 or 640 it");
  }
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot read key file: " + std::strerror(errno));
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    if (!isZ85Key(line))
      throw std::runtime_error(path + ": not a CURVE key (expected 40 Z85 characters, found " +
                               std::to_string(line.size()) + " characters)");
    return line;
  }
  throw std::runtime_error(path + ": key file is empty");
}

void writeCurveKeyFiles(const std::string& dir, const std::string& name, const CurveKeyPair& keys) {
  writeFileExclusive(dir + "/" + name + ".key", keys.secretKey + "\n", 0600);
  writeFileExclusive(dir + "/" + name + ".pub", keys.publicKey + "\n", 0644);
}

}  // namespace garda::common
