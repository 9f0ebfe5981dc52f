// The map layouts shared by garda_xdp.bpf.c and the loader
// (sensor/enforce/xdp_enforcer.cpp). Plain C, fixed-width fields, no
// implicit padding: the two sides must agree byte for byte.
#pragma once

#include <linux/types.h>

// IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d), prefix lengths
// counted in the 128-bit space (an IPv4 /24 is 120).
struct garda_src_key {
  __u32 prefixlen;
  __u8 addr[16];
};

// prefixlen 128 + n: this destination, sources in the /n; prefixlen n <= 128:
// every source toward the destination prefix.
struct garda_dst_src_key {
  __u32 prefixlen;
  __u8 dst[16];
  __u8 src[16];
};

struct garda_flow_key {
  __u8 family;        // 4 or 6
  __u8 protocol;      // IPPROTO_UDP or IPPROTO_TCP
  __u16 source_port;  // network byte order
  __u8 dst[16];
};

struct garda_entry {
  __u64 deadline_boot_ns;  // CLOCK_BOOTTIME; the entry is dead from then on
  __u32 slot;              // index into `drops`
  __u32 reserved;
};

// One slot of the per-CPU `drops` array: what a rule has dropped.
struct garda_count {
  __u64 packets;
  __u64 bytes;  // frame lengths as XDP sees them (from the Ethernet header)
};
