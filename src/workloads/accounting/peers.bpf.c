/* Bytes per cgroup and per remote peer in one pass: a cgroup_skb program
 * for each direction, counting every packet of the inet sockets below the
 * cgroup it is linked to by (socket cgroup, remote address, server port,
 * side), and by socket cgroup as program.rs's counter does (the same maps,
 * the same slot 0, the same fresh map). It replaces that counter where
 * [peers] is on: the peer map's value caches the cgroup's slot, so a
 * packet whose key is there costs one hash lookup, not two. peers.rs
 * creates the peer maps, mod.rs the per-cgroup ones; the sizes below must
 * match theirs.
 *
 * Build (the object is committed; CI rebuilds it and compares the code):
 *   clang -O2 -target bpf -mcpu=v3 -I/usr/include/$(uname -m)-linux-gnu \
 *     -c peers.bpf.c -o peers.bpf.o
 * (-I: <linux/bpf.h> needs <asm/types.h>, which Debian keeps in the
 * multiarch directory that clang does not search for -target bpf.)
 *
 * No global variables, so the only relocations are the six maps'.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define PROTO_TCP 6
#define PROTO_UDP 17

#define SIDE_NONE 0
#define SIDE_SERVER 1 /* the local port is listed: this host serves */
#define SIDE_CLIENT 2 /* the remote port is listed: this host is the client */

/* Written once by user space. */
struct peer_cfg {
	__u64 root_id; /* the cgroup v2 root's id */
	__u8 proto[65536]; /* by port: a protocol index 1..255, or 0 */
};

struct peer_key {
	__u64 cgroup;
	__u8 addr[16]; /* IPv6, network order; IPv4 as ::ffff:a.b.c.d */
	__u16 port; /* the listed port, or 0: never an ephemeral one */
	__u8 side;
	__u8 pad[5];
};

struct counts {
	__u64 rx_bytes;
	__u64 rx_packets;
	__u64 tx_bytes;
	__u64 tx_packets;
};

/* A peer's counts, and the slot its cgroup had in tne_counters when a
 * packet last found it there (0: none known, look it up). User space
 * zeroes a slot before it hands the slot to another cgroup (mod.rs). */
struct peer_value {
	struct counts c;
	__u32 slot;
	__u32 pad;
};

/* The per-cgroup maps, program.rs's: cgroup id -> slot; the slots' counts
 * (slot 0: new cgroups met, packets uncounted); cgroup id -> counts for a
 * cgroup with no slot yet. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u32);
} tne_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1025);
	__type(key, __u32);
	__type(value, struct counts);
} tne_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct counts);
} tne_fresh SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct peer_cfg);
} tne_peer_cfg SEC(".maps");

/* Not LRU: a full map must be seen, to count what it could not hold. Not
 * preallocated: a key user space deletes while a packet counts in it
 * cannot become another key under that packet. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096); /* user space sets its own */
	__type(key, struct peer_key);
	__type(value, struct peer_value);
} tne_peers SEC(".maps");

/* Entry 0: keys inserted, lost packets, lost bytes. Entry 1 + p: packets of
 * protocol p served by the root cgroup (kernel servers such as knfsd),
 * counted exactly whatever the peer map holds. User space maps it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 257);
	__type(key, __u32);
	__type(value, struct counts);
} tne_peer_stats SEC(".maps");

/* The remote end and the ports as the packet says: for a socket with no
 * peer of its own (unconnected UDP; a listener, which sees the SYN and
 * sends the SYN-ACK). The packet starts at its IP header. Headers in the
 * packet's linear part (always, but for odd drivers) are read in place;
 * else copied out by a helper call. What cannot be read stays as the
 * socket said: all of it without an IP header, the ports without a TCP or
 * UDP one. */
static __always_inline void from_packet(struct __sk_buff *skb, int egress, __u32 remote[4],
					__u16 *remote_port, __u16 *local_port)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	union {
		__u8 b[40];
		__u32 w[10];
	} h;
	__u32 l4;
	__u8 proto;

	if (data + 20 <= data_end)
		__builtin_memcpy(&h, data, 20);
	else if (bpf_skb_load_bytes(skb, 0, &h, 20))
		return;
	if (h.b[0] >> 4 == 4) {
		l4 = (h.b[0] & 0xf) * 4;
		proto = h.b[9];
		remote[0] = 0;
		remote[1] = 0;
		remote[2] = bpf_htonl(0xffff);
		remote[3] = egress ? h.w[4] : h.w[3];
	} else if (h.b[0] >> 4 == 6) {
		if (data + 40 <= data_end)
			__builtin_memcpy(&h, data, 40);
		else if (bpf_skb_load_bytes(skb, 0, &h, 40))
			return;
		/* No walk of extension headers: past one, the ports are 0. */
		l4 = 40;
		proto = h.b[6];
		for (int i = 0; i < 4; i++)
			remote[i] = egress ? h.w[6 + i] : h.w[2 + i];
	} else {
		return;
	}
	if (proto != PROTO_TCP && proto != PROTO_UDP) {
		*remote_port = 0;
		*local_port = 0;
		return;
	}
	__be16 ports[2]; /* source, destination */
	void *at = data + l4;

	if (at + 4 <= data_end)
		__builtin_memcpy(ports, at, 4);
	else if (bpf_skb_load_bytes(skb, l4, ports, 4))
		return;
	*remote_port = bpf_ntohs(egress ? ports[1] : ports[0]);
	*local_port = bpf_ntohs(egress ? ports[0] : ports[1]);
}

static __always_inline void add(__u64 *c, int egress, __u64 len)
{
	__sync_fetch_and_add(&c[egress ? 2 : 0], len);
	__sync_fetch_and_add(&c[egress ? 3 : 1], 1);
}

/* program.rs's counter: the cgroup's slot, else its entry in the fresh map
 * (made at zero by its first packet, which counts one new cgroup in slot
 * 0), else one uncounted packet in slot 0 (the fresh map is full). The
 * slot it counted in, or 0. */
static __always_inline __u32 per_cgroup(__u64 *id, int egress, __u64 len)
{
	__u32 zero = 0;
	__u32 *s = bpf_map_lookup_elem(&tne_slots, id);
	__u64 *c;

	if (s) {
		__u32 slot = *s;

		c = bpf_map_lookup_elem(&tne_counters, &slot);
		/* None only past the array's end, never handed out. */
		if (!c)
			return 0;
		add(c, egress, len);
		return slot;
	}
	c = bpf_map_lookup_elem(&tne_fresh, id);
	if (!c) {
		struct counts fresh = {};

		if (!bpf_map_update_elem(&tne_fresh, id, &fresh, BPF_NOEXIST)) {
			__u64 *news = bpf_map_lookup_elem(&tne_counters, &zero);

			if (news)
				__sync_fetch_and_add(&news[0], 1);
		}
		/* Inserted here or by another CPU meanwhile; else full. */
		c = bpf_map_lookup_elem(&tne_fresh, id);
	}
	if (c) {
		add(c, egress, len);
	} else {
		__u64 *lost = bpf_map_lookup_elem(&tne_counters, &zero);

		if (lost)
			__sync_fetch_and_add(&lost[1], 1);
	}
	return 0;
}

static __always_inline int count(struct __sk_buff *skb, int egress)
{
	__u32 zero = 0;
	__u64 len = skb->len;
	struct peer_key key = {};
	struct peer_value *v = 0;
	__u64 *slot_counts = 0;
	/* Whether the packet has a peer key: an inet socket's. */
	int keyed = 0;

	key.cgroup = bpf_skb_cgroup_id(skb);

	struct peer_cfg *cfg = bpf_map_lookup_elem(&tne_peer_cfg, &zero);
	__u64 *stats = bpf_map_lookup_elem(&tne_peer_stats, &zero);
	/* The hook runs only with a full inet socket (a request socket's
	 * packets run with its listener), so the socket's fields are there
	 * to read; any other family is counted per cgroup only. */
	__u32 family = skb->family;

	if (cfg && stats && (family == AF_INET || family == AF_INET6)) {
		__u32 remote[4] = {};
		__u16 local_port = skb->local_port;
		/* In network order in the upper half on little-endian machines. */
		__u16 remote_port = bpf_ntohl(skb->remote_port);

		int no_peer;

		if (family == AF_INET) {
			remote[2] = bpf_htonl(0xffff);
			remote[3] = skb->remote_ip4;
			no_peer = !remote[3];
		} else {
			/* A v4-mapped peer of a dual-stack socket is already the
			 * key's form for IPv4. */
			remote[0] = skb->remote_ip6[0];
			remote[1] = skb->remote_ip6[1];
			remote[2] = skb->remote_ip6[2];
			remote[3] = skb->remote_ip6[3];
			no_peer = !(remote[0] | remote[1] | remote[2] | remote[3]);
		}
		if (no_peer)
			from_packet(skb, egress, remote, &remote_port, &local_port);
		__builtin_memcpy(key.addr, remote, 16);
		if (cfg->proto[local_port]) {
			key.port = local_port;
			key.side = SIDE_SERVER;
		} else if (cfg->proto[remote_port]) {
			key.port = remote_port;
			key.side = SIDE_CLIENT;
		}
		keyed = 1;
		v = bpf_map_lookup_elem(&tne_peers, &key);
		/* The fast path: the key caches its cgroup's slot. */
		if (v && v->slot) {
			__u32 slot = v->slot;

			slot_counts = bpf_map_lookup_elem(&tne_counters, &slot);
		}
	}

	if (slot_counts) {
		add(slot_counts, egress, len);
	} else {
		__u32 slot = per_cgroup(&key.cgroup, egress, len);

		if (v) {
			/* Racy, and harmless: any CPU writes the slot the
			 * cgroup has, or 0. */
			v->slot = slot;
		} else if (keyed) {
			struct peer_value fresh = {};

			fresh.slot = slot;
			if (!bpf_map_update_elem(&tne_peers, &key, &fresh, BPF_NOEXIST))
				__sync_fetch_and_add(&stats[0], 1);
			/* Inserted here or by another CPU meanwhile; else full. */
			v = bpf_map_lookup_elem(&tne_peers, &key);
		}
	}
	if (!keyed || !cfg || !stats)
		return 1;

	/* After the cgroup's count: the root's served count trails its
	 * total. */
	if (key.side == SIDE_SERVER && key.cgroup == cfg->root_id) {
		__u32 slot = 1 + cfg->proto[key.port];
		__u64 *served = bpf_map_lookup_elem(&tne_peer_stats, &slot);

		if (served)
			add(served, egress, len);
	}

	if (!v) {
		__sync_fetch_and_add(&stats[1], 1);
		__sync_fetch_and_add(&stats[2], len);
		return 1;
	}
	add((__u64 *)&v->c, egress, len);
	/* Never drops a packet. */
	return 1;
}

SEC("cgroup_skb/ingress")
int tne_peer_rx(struct __sk_buff *skb)
{
	return count(skb, 0);
}

SEC("cgroup_skb/egress")
int tne_peer_tx(struct __sk_buff *skb)
{
	return count(skb, 1);
}
