/* Bytes per remote peer: a cgroup_skb program for each direction, counting
 * every packet of the inet sockets below the cgroup it is linked to by
 * (socket cgroup, remote address, server port, side). peers.rs creates the
 * maps, loads these sections and reads the counts; the sizes below must
 * match its own.
 *
 * Build (the object is committed; CI rebuilds it and compares the code):
 *   clang -O2 -target bpf -mcpu=v3 -I/usr/include/$(uname -m)-linux-gnu \
 *     -c peers.bpf.c -o peers.bpf.o
 * (-I: <linux/bpf.h> needs <asm/types.h>, which Debian keeps in the
 * multiarch directory that clang does not search for -target bpf.)
 *
 * No global variables, so the only relocations are the three maps'.
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
	__type(value, struct counts);
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
 * sends the SYN-ACK). The packet starts at its IP header. What cannot be
 * read stays as the socket said: all of it without an IP header, the ports
 * without a TCP or UDP one. */
static __always_inline void from_packet(struct __sk_buff *skb, int egress, __u32 remote[4],
					__u16 *remote_port, __u16 *local_port)
{
	union {
		__u8 b[40];
		__u32 w[10];
	} h;
	__u32 l4;
	__u8 proto;

	if (bpf_skb_load_bytes(skb, 0, &h, 20))
		return;
	if (h.b[0] >> 4 == 4) {
		l4 = (h.b[0] & 0xf) * 4;
		proto = h.b[9];
		remote[0] = 0;
		remote[1] = 0;
		remote[2] = bpf_htonl(0xffff);
		remote[3] = egress ? h.w[4] : h.w[3];
	} else if (h.b[0] >> 4 == 6) {
		if (bpf_skb_load_bytes(skb, 0, &h, 40))
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

	if (bpf_skb_load_bytes(skb, l4, ports, 4))
		return;
	*remote_port = bpf_ntohs(egress ? ports[1] : ports[0]);
	*local_port = bpf_ntohs(egress ? ports[0] : ports[1]);
}

static __always_inline int count(struct __sk_buff *skb, int egress)
{
	__u32 zero = 0;
	struct peer_cfg *cfg = bpf_map_lookup_elem(&tne_peer_cfg, &zero);
	__u64 *stats = bpf_map_lookup_elem(&tne_peer_stats, &zero);

	if (!cfg || !stats)
		return 1;

	/* The hook runs only with a full inet socket (a request socket's
	 * packets run with its listener), so the socket's fields are there
	 * to read; any other family is skipped. */
	__u32 family = skb->family;
	__u32 remote[4] = {};
	__u16 local_port = skb->local_port;
	/* In network order in the upper half on little-endian machines. */
	__u16 remote_port = bpf_ntohl(skb->remote_port);

	if (family == AF_INET) {
		remote[2] = bpf_htonl(0xffff);
		remote[3] = skb->remote_ip4;
		if (!remote[3])
			from_packet(skb, egress, remote, &remote_port, &local_port);
	} else if (family == AF_INET6) {
		/* A v4-mapped peer of a dual-stack socket is already the key's
		 * form for IPv4. */
		remote[0] = skb->remote_ip6[0];
		remote[1] = skb->remote_ip6[1];
		remote[2] = skb->remote_ip6[2];
		remote[3] = skb->remote_ip6[3];
		if (!(remote[0] | remote[1] | remote[2] | remote[3]))
			from_packet(skb, egress, remote, &remote_port, &local_port);
	} else {
		return 1;
	}

	struct peer_key key = {};
	__u64 len = skb->len;

	key.cgroup = bpf_skb_cgroup_id(skb);
	__builtin_memcpy(key.addr, remote, 16);
	if (cfg->proto[local_port]) {
		key.port = local_port;
		key.side = SIDE_SERVER;
	} else if (cfg->proto[remote_port]) {
		key.port = remote_port;
		key.side = SIDE_CLIENT;
	}

	if (key.side == SIDE_SERVER && key.cgroup == cfg->root_id) {
		__u32 slot = 1 + cfg->proto[key.port];
		__u64 *served = bpf_map_lookup_elem(&tne_peer_stats, &slot);

		if (served) {
			__sync_fetch_and_add(&served[egress ? 2 : 0], len);
			__sync_fetch_and_add(&served[egress ? 3 : 1], 1);
		}
	}

	__u64 *c = bpf_map_lookup_elem(&tne_peers, &key);

	if (!c) {
		struct counts fresh = {};

		if (!bpf_map_update_elem(&tne_peers, &key, &fresh, BPF_NOEXIST))
			__sync_fetch_and_add(&stats[0], 1);
		/* Inserted here or by another CPU meanwhile; else full. */
		c = bpf_map_lookup_elem(&tne_peers, &key);
	}
	if (!c) {
		__sync_fetch_and_add(&stats[1], 1);
		__sync_fetch_and_add(&stats[2], len);
		return 1;
	}
	__sync_fetch_and_add(&c[egress ? 2 : 0], len);
	__sync_fetch_and_add(&c[egress ? 3 : 1], 1);
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
