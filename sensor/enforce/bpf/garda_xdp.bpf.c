// SPDX-License-Identifier: GPL-2.0
// Garda's XDP drop program. The sensor (sensor/enforce/xdp_enforcer.cpp)
// loads it, sizes its maps to enforce.max_rules and fills them; this side
// only looks up and drops.
//
// Three kinds of rule, each a map:
//   by_src      LPM trie on the source prefix          (botnet sources)
//   by_dst_src  LPM trie on destination . source       (sources toward one
//               victim; or a whole destination prefix)
//   by_flow     hash on (family, protocol, source port, destination address)
//               (reflection: UDP from port 53 toward the victim)
// IPv4 addresses are written IPv4-mapped (::ffff:a.b.c.d), so one map holds
// both families. Each entry carries its absolute expiry on CLOCK_BOOTTIME:
// an expired entry neither drops nor counts, so no rule outlives its TTL even
// when the sensor that would have removed it is dead. Each entry names a slot
// in the per-CPU `drops` array, its drop counters (packets and bytes).
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "garda_xdp.h"

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(max_entries, 1);  // set by the loader
  __type(key, struct garda_src_key);
  __type(value, struct garda_entry);
} by_src SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(max_entries, 1);
  __type(key, struct garda_dst_src_key);
  __type(value, struct garda_entry);
} by_dst_src SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __type(key, struct garda_flow_key);
  __type(value, struct garda_entry);
} by_flow SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct garda_count);
} drops SEC(".maps");

struct vlan_header {
  __be16 tci;
  __be16 proto;
};

// True when the entry is live; counts the packet against it.
static __always_inline int live(struct garda_entry *e, __u64 len) {
  if (!e) return 0;
  if (bpf_ktime_get_boot_ns() >= e->deadline_boot_ns) return 0;
  __u32 slot = e->slot;
  struct garda_count *count = bpf_map_lookup_elem(&drops, &slot);
  if (count) {  // per-CPU: no atomics needed
    count->packets += 1;
    count->bytes += len;
  }
  return 1;
}

static __always_inline int verdict(const __u8 *src, const __u8 *dst, __u8 family, __u8 protocol,
                                   void *l4, void *end, __u64 len) {
  struct garda_src_key sk = {.prefixlen = 128};
  __builtin_memcpy(sk.addr, src, 16);
  if (live(bpf_map_lookup_elem(&by_src, &sk), len)) return XDP_DROP;

  struct garda_dst_src_key dk = {.prefixlen = 256};
  __builtin_memcpy(dk.dst, dst, 16);
  __builtin_memcpy(dk.src, src, 16);
  if (live(bpf_map_lookup_elem(&by_dst_src, &dk), len)) return XDP_DROP;

  if (l4 && (protocol == IPPROTO_UDP || protocol == IPPROTO_TCP)) {
    if (l4 + 4 > end) return XDP_PASS;
    struct garda_flow_key fk;
    __builtin_memset(&fk, 0, sizeof fk);
    fk.family = family;
    fk.protocol = protocol;
    fk.source_port = *(__be16 *)l4;
    __builtin_memcpy(fk.dst, dst, 16);
    if (live(bpf_map_lookup_elem(&by_flow, &fk), len)) return XDP_DROP;
  }
  return XDP_PASS;
}

SEC("xdp")
int garda_xdp(struct xdp_md *ctx) {
  void *data = (void *)(long)ctx->data;
  void *end = (void *)(long)ctx->data_end;
  struct ethhdr *eth = data;
  if ((void *)(eth + 1) > end) return XDP_PASS;
  __be16 proto = eth->h_proto;
  void *l3 = eth + 1;
  if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
    struct vlan_header *vlan = l3;
    if ((void *)(vlan + 1) > end) return XDP_PASS;
    proto = vlan->proto;
    l3 = vlan + 1;
  }
  __u8 src[16] = {}, dst[16] = {};
  if (proto == bpf_htons(ETH_P_IP)) {
    struct iphdr *ip = l3;
    if ((void *)(ip + 1) > end) return XDP_PASS;
    src[10] = src[11] = dst[10] = dst[11] = 0xff;
    __builtin_memcpy(src + 12, &ip->saddr, 4);
    __builtin_memcpy(dst + 12, &ip->daddr, 4);
    void *l4 = 0;
    // Only the first fragment carries ports.
    if (!(ip->frag_off & bpf_htons(0x1fff)) && ip->ihl >= 5) l4 = l3 + ip->ihl * 4;
    return verdict(src, dst, 4, ip->protocol, l4, end, (__u64)(end - data));
  }
  if (proto == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr *ip6 = l3;
    if ((void *)(ip6 + 1) > end) return XDP_PASS;
    __builtin_memcpy(src, &ip6->saddr, 16);
    __builtin_memcpy(dst, &ip6->daddr, 16);
    // Ports only when the transport header follows directly (no extension
    // headers): a reflection rule does not see past them.
    return verdict(src, dst, 6, ip6->nexthdr, ip6 + 1, end, (__u64)(end - data));
  }
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
