// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * heartbeat-cgroup's BPF program: a sock_ops program attached to a cgroup.
 *
 * - When a TCP connection of a process in the cgroup is established
 *   (actively: connect(); passively: a connection accepted by a listener
 *   in the cgroup), it sets the configured options with bpf_setsockopt():
 *   TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT, then
 *   SO_KEEPALIVE, in that order, and asks for state-change callbacks.
 * - When such a connection enters TCP_CLOSE, it sends one event through a
 *   ring buffer: addresses, ports, sk_err (0: orderly close; ETIMEDOUT,
 *   ECONNRESET, ...), the previous state, retransmissions, unanswered
 *   probes. A full ring buffer loses the event and counts it; it never
 *   blocks the kernel.
 *
 * The settings live in a map, written by the tool (double-buffered: the
 * tool writes the inactive slot, then flips `active`), so that attaching
 * again with new values changes them without reloading or detaching.
 *
 * The layouts of struct hb_settings, hb_stats and hb_event are mirrored in
 * cgroup/src/bpf.rs; both sides assert the same sizes and offsets.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* From <sys/socket.h>, <netinet/tcp.h>: not includable with -target bpf. */
#define SOL_SOCKET 1
#define SO_KEEPALIVE 9
#define SOL_TCP 6
#define TCP_KEEPIDLE 4
#define TCP_KEEPINTVL 5
#define TCP_KEEPCNT 6
#define TCP_USER_TIMEOUT 18
#define AF_INET 2
#define AF_INET6 10
#define INT_MAX 2147483647

/* hb_settings.flags: which values are set (unset: the socket keeps what it
 * has, the defaults of its network namespace). */
#define HB_IDLE 1u
#define HB_INTVL 2u
#define HB_CNT 4u
#define HB_USER_TIMEOUT 8u    /* user_timeout holds the value */
#define HB_USER_TIMEOUT_AUTO 16u /* the deadline of the socket's own timers */

struct hb_settings {
	__u32 flags;
	__s32 idle;
	__s32 intvl;
	__s32 cnt;
	__s32 user_timeout;
	__u32 generation; /* bumped by every attach: shown, not used here */
};

/* Which option failed (hb_stats.last_failed_option). */
enum hb_option {
	HB_OPT_NONE = 0,
	HB_OPT_IDLE = 1,
	HB_OPT_INTVL = 2,
	HB_OPT_CNT = 3,
	HB_OPT_USER_TIMEOUT = 4,
	HB_OPT_KEEPALIVE = 5,
	HB_OPT_READ_TIMERS = 6, /* bpf_getsockopt() of the timers, for auto */
};

struct hb_stats {
	__u64 configured; /* connections given every option */
	__u64 failed;     /* connections where bpf_setsockopt() refused one */
	__u64 ended;      /* connections seen entering TCP_CLOSE */
	__u64 lost;       /* of those, events dropped: ring buffer full */
	__s32 last_error; /* the refusal's return value (-errno) */
	__u32 last_failed_option; /* enum hb_option */
};

struct hb_event {
	__u64 mono_ns;        /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 bytes_received;
	__u64 bytes_acked;
	__u32 family;         /* AF_INET or AF_INET6 */
	__u32 local_ip[4];    /* network byte order; IPv4 in [0] */
	__u32 remote_ip[4];
	__u32 local_port;     /* host byte order */
	__u32 remote_port;    /* host byte order */
	__s32 err;            /* sk_err at the end: 0, ETIMEDOUT, ECONNRESET... */
	__u32 old_state;      /* the state it left (BPF_TCP_*) */
	__u32 total_retrans;
	__u32 probes;         /* icsk_probes_out: unanswered probes */
	__u32 pad;
};

_Static_assert(sizeof(struct hb_settings) == 24, "hb_settings layout");
_Static_assert(sizeof(struct hb_stats) == 40, "hb_stats layout");
_Static_assert(sizeof(struct hb_event) == 88, "hb_event layout");
_Static_assert(__builtin_offsetof(struct hb_event, err) == 68, "hb_event layout");

/* The kernel's own types, only the fields read here: clang records the
 * field names (CO-RE), and the loader finds their offsets in the running
 * kernel's BTF (/sys/kernel/btf/vmlinux). */
struct sock {
	int sk_err;
} __attribute__((preserve_access_index));
struct inet_sock {
	struct sock sk;
} __attribute__((preserve_access_index));
struct inet_connection_sock {
	struct inet_sock icsk_inet;
	__u8 icsk_probes_out;
} __attribute__((preserve_access_index));
struct tcp_sock {
	struct inet_connection_sock inet_conn;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct hb_settings);
} hb_settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} hb_active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hb_stats);
} hb_stats SEC(".maps");

/* 256 KiB: 2730 events (88 bytes and the kernel's 8-byte header each). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} hb_events SEC(".maps");

static __always_inline struct hb_stats *stats(void)
{
	__u32 k = 0;
	return bpf_map_lookup_elem(&hb_stats, &k);
}

static __always_inline int set_int(struct bpf_sock_ops *skops, int level, int name, int v)
{
	return bpf_setsockopt(skops, level, name, &v, sizeof(v));
}

static __always_inline int get_int(struct bpf_sock_ops *skops, int name, int *v)
{
	return bpf_getsockopt(skops, SOL_TCP, name, v, sizeof(*v));
}

/* Returns 1 if every option was set. */
static __always_inline int configure(struct bpf_sock_ops *skops)
{
	__u32 k = 0;
	__u32 *active = bpf_map_lookup_elem(&hb_active, &k);
	if (!active)
		return 0;
	__u32 slot = *active & 1;
	struct hb_settings *sp = bpf_map_lookup_elem(&hb_settings, &slot);
	if (!sp)
		return 0;
	struct hb_settings s = *sp;
	int err = 0;
	__u32 opt = HB_OPT_NONE;

	if (s.flags & HB_IDLE) {
		opt = HB_OPT_IDLE;
		if ((err = set_int(skops, SOL_TCP, TCP_KEEPIDLE, s.idle)))
			goto fail;
	}
	if (s.flags & HB_INTVL) {
		opt = HB_OPT_INTVL;
		if ((err = set_int(skops, SOL_TCP, TCP_KEEPINTVL, s.intvl)))
			goto fail;
	}
	if (s.flags & HB_CNT) {
		opt = HB_OPT_CNT;
		if ((err = set_int(skops, SOL_TCP, TCP_KEEPCNT, s.cnt)))
			goto fail;
	}
	if (s.flags & HB_USER_TIMEOUT_AUTO) {
		/* The deadline of the timers the socket now has: those just
		 * set, and the defaults of its network namespace for the
		 * others (or what the program itself chose before). */
		int idle = 0, intvl = 0, cnt = 0;
		opt = HB_OPT_READ_TIMERS;
		if ((err = get_int(skops, TCP_KEEPIDLE, &idle)) ||
		    (err = get_int(skops, TCP_KEEPINTVL, &intvl)) ||
		    (err = get_int(skops, TCP_KEEPCNT, &cnt)))
			goto fail;
		__u64 ms = ((__u64)(idle > 0 ? idle : 0) +
			    (__u64)(intvl > 0 ? intvl : 0) * (__u64)(cnt > 0 ? cnt : 0)) * 1000;
		s.user_timeout = ms > INT_MAX ? INT_MAX : (int)ms;
		s.flags |= HB_USER_TIMEOUT;
	}
	if (s.flags & HB_USER_TIMEOUT) {
		opt = HB_OPT_USER_TIMEOUT;
		if ((err = set_int(skops, SOL_TCP, TCP_USER_TIMEOUT, s.user_timeout)))
			goto fail;
	}
	opt = HB_OPT_KEEPALIVE;
	if ((err = set_int(skops, SOL_SOCKET, SO_KEEPALIVE, 1)))
		goto fail;

	struct hb_stats *st = stats();
	if (st)
		__sync_fetch_and_add(&st->configured, 1);
	return 1;
fail:
	st = stats();
	if (st) {
		__sync_fetch_and_add(&st->failed, 1);
		st->last_error = err;
		st->last_failed_option = opt;
	}
	return 0;
}

static __always_inline void report(struct bpf_sock_ops *skops)
{
	struct hb_stats *st = stats();
	if (st)
		__sync_fetch_and_add(&st->ended, 1);
	struct hb_event *e = bpf_ringbuf_reserve(&hb_events, sizeof(*e), 0);
	if (!e) {
		if (st)
			__sync_fetch_and_add(&st->lost, 1);
		return;
	}
	e->mono_ns = bpf_ktime_get_ns();
	e->bytes_received = skops->bytes_received;
	e->bytes_acked = skops->bytes_acked;
	e->family = skops->family;
	if (skops->family == AF_INET6) {
		e->local_ip[0] = skops->local_ip6[0];
		e->local_ip[1] = skops->local_ip6[1];
		e->local_ip[2] = skops->local_ip6[2];
		e->local_ip[3] = skops->local_ip6[3];
		e->remote_ip[0] = skops->remote_ip6[0];
		e->remote_ip[1] = skops->remote_ip6[1];
		e->remote_ip[2] = skops->remote_ip6[2];
		e->remote_ip[3] = skops->remote_ip6[3];
	} else {
		e->local_ip[0] = skops->local_ip4;
		e->local_ip[1] = e->local_ip[2] = e->local_ip[3] = 0;
		e->remote_ip[0] = skops->remote_ip4;
		e->remote_ip[1] = e->remote_ip[2] = e->remote_ip[3] = 0;
	}
	e->local_port = skops->local_port;
	/* remote_port holds the big-endian port in its upper 16 bits. */
	e->remote_port = bpf_ntohl(skops->remote_port);
	e->old_state = skops->args[0];
	e->total_retrans = skops->total_retrans;
	e->err = 0;
	e->probes = 0;
	e->pad = 0;
	struct bpf_sock *sk = skops->sk;
	if (sk) {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
		if (tp) {
			e->err = tp->inet_conn.icsk_inet.sk.sk_err;
			e->probes = tp->inet_conn.icsk_probes_out;
		}
	}
	bpf_ringbuf_submit(e, 0);
}

SEC("sockops")
int heartbeat_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		configure(skops);
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] == BPF_TCP_CLOSE)
			report(skops);
		break;
	}
	return 1;
}

/* GPL-compatible (the kernel's list includes "Dual MIT/GPL"), as the
 * kernel requires of a program that reads kernel memory through BTF
 * pointers. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";
