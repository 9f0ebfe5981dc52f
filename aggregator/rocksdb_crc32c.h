#pragma once
// RocksDB's CRC32C, computed with the CPU's crc32 instruction in this process
// (rocksdb_crc32c.cpp: the link sends librocksdb's calls of its portable
// software one there).

#include <cstddef>
#include <cstdint>

namespace garda::aggregator {

struct Crc32cUse {
  bool hardware = false;  // the CPU has SSE4.2: the crc32 instruction is used
  uint64_t calls = 0;     // how many times RocksDB asked for a CRC32C here
};
// calls > 0 after a store was opened proves that RocksDB's own calls come
// here (its WAL and MANIFEST records are checksummed).
Crc32cUse rocksdbCrc32c() noexcept;

// What RocksDB's calls reach (the hardware one where the CPU has it).
uint32_t rocksdbCrc32cExtend(uint32_t crc, const char* data, size_t n) noexcept;
// librocksdb's own Extend (its software loop in Debian's build).
uint32_t rocksdbOwnCrc32cExtend(uint32_t crc, const char* data, size_t n) noexcept;

}  // namespace garda::aggregator
