#pragma once

#include <string>

namespace garda::common {

// A CURVE key pair in Z85 text (40 characters each), as ZeroMQ takes it.
struct CurveKeyPair {
  std::string publicKey;
  std::string secretKey;
};

CurveKeyPair generateCurveKeyPair();

// The public key that belongs to a Z85 secret key. Throws on a bad key.
std::string curvePublicFromSecret(const std::string& secretZ85);

// Reads a key file (one Z85 key on the first line; blank lines and lines
// starting with '#' are ignored). Throws std::runtime_error naming the file
// when it is missing, unreadable, or not a 40-character Z85 key. A secret key
// file that others (not owner or group) may read is refused.
std::string readCurveKeyFile(const std::string& path, bool isSecret);

// Writes DIR/NAME.key (secret, mode 0600) and DIR/NAME.pub (public, 0644).
// Refuses to overwrite an existing key file. Throws with the path on failure.
void writeCurveKeyFiles(const std::string& dir, const std::string& name, const CurveKeyPair& keys);

}  // namespace garda::common
