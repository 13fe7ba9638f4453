/* The ring-3 part of the network benchmark guest (netbench.asm sets up long
 * mode and enters netmain here at native speed on kvm_pvm hosts).
 *
 * A polled virtio-net driver (modern PCI transport, virtio 1.x section 4.1;
 * no interrupts: the avail rings say VIRTQ_AVAIL_F_NO_INTERRUPT), a DHCP client
 * (RFC 2131), ARP replies, and a TCP client (RFC 793: no options but MSS, a
 * fixed 64 KiB - 1 window, go-back-N on a timeout) that connects to the DHCP
 * router's address (user-mode NAT's address for the host's loopback) on the
 * port given as "port=N" on the command line and then obeys the host:
 *   'P'          ping: answer 'p' at once (round-trip latency)
 *   'U' n (LE32) upload: send n bytes to the host (guest -> host throughput);
 *                byte i of an upload is 'a' + i % 26
 *   'D' n (LE32) download: the host sends n bytes; answer 'k' once all arrived
 *   'd' n (LE32) the same, checking the bytes (stream byte i is 'a' + i % 26)
 *   'Q'          close the connection and exit (isa-debug-exit, value 0)
 * COM1 gets "netbench: ..." progress lines; failures print "netbench: failed:
 * WHY" and exit with 0x0c. Written from the virtio 1.x specification and the
 * RFCs; kept small rather than general: one connection, one card.
 */
#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

/* ---- machine access ----------------------------------------------------- */

static inline void outb(u16 p, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(p)); }
static inline u8 inb(u16 p) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline void outw(u16 p, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(p)); }
static inline void outl(u16 p, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(p)); }
static inline u32 inl(u16 p) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline u64 rdtsc(void) { u32 lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((u64)hi << 32) | lo; }
static inline void barrier(void) { __asm__ volatile("mfence" ::: "memory"); }

void *memcpy(void *d, const void *s, size_t n) {
  void *r = d;
  __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
  return r;
}
void *memset(void *d, int c, size_t n) {
  void *r = d;
  __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
  return r;
}

static void putc_(char c) {
  while (!(inb(0x3f8 + 5) & 0x20)) {}
  outb(0x3f8, (u8)c);
}
static void puts_(const char *s) { while (*s) putc_(*s++); }
static void putdec(u32 v) {
  char b[11];
  int i = 10;
  b[i] = 0;
  do { b[--i] = (char)('0' + v % 10); v /= 10; } while (v);
  puts_(b + i);
}
static void putip(u32 ip) { /* ip as it lies in a frame */
  for (int i = 0; i < 4; i++) { putdec((ip >> (8 * i)) & 0xff); if (i < 3) putc_('.'); }
}
static void __attribute__((noreturn)) quit(u8 code) {
  outb(0xf4, code);
  for (;;) {}
}
static void __attribute__((noreturn)) fail(const char *why) {
  puts_("netbench: failed: ");
  puts_(why);
  putc_('\n');
  quit(0x0c);
}

/* ---- PCI and the virtio-net card --------------------------------------- */

static u32 pci_addr;
static u32 cfg_read(u32 off) { outl(0xcf8, pci_addr | (off & 0xfc)); return inl(0xcfc); }
static void cfg_write16(u32 off, u16 v) { outl(0xcf8, pci_addr | (off & 0xfc)); outw(0xcfc + (off & 2), v); }

/* Maps the 1 GiB around `at` (a 64-bit BAR that firmware placed above 4 GiB,
 * as SeaBIOS 1.16.3 does, top-down from 2^46) with 2 MiB user pages. The page
 * tables (netbench.asm: PML4 at 0x70000) lie in the identity-mapped user RAM;
 * the entries were not present, so no TLB entry needs flushing. */
static void map_1g(u64 at) {
  static u64 next_table = 0x78000; /* free pages below the ring-0 stack (0x90000) */
  volatile u64 *pml4 = (volatile u64 *)0x70000;
  u32 i4 = (u32)(at >> 39) & 511, i3 = (u32)(at >> 30) & 511;
  if (!(pml4[i4] & 1)) { memset((void *)next_table, 0, 4096); pml4[i4] = next_table | 7; next_table += 4096; }
  volatile u64 *pdpt = (volatile u64 *)(pml4[i4] & ~0xfffull);
  if (pdpt[i3] & 1) return;
  if (next_table >= 0x80000) fail("too many BAR regions to map");
  volatile u64 *pd = (volatile u64 *)next_table;
  for (u32 i = 0; i < 512; i++) pd[i] = ((at & ~((1ull << 30) - 1)) + ((u64)i << 21)) | 0x87;
  pdpt[i3] = next_table | 7;
  next_table += 4096;
}

static u64 bar_base(u32 bar) {
  u32 lo = cfg_read(0x10 + 4 * bar);
  if (lo & 1) fail("virtio capability in an I/O BAR");
  u64 base = lo & ~0xfu;
  if ((lo & 6) == 4) base |= (u64)cfg_read(0x14 + 4 * bar) << 32;
  if (base == 0) fail("virtio BAR unassigned");
  if (base >= (1ull << 32)) map_1g(base);
  return base;
}

#define Q 256              /* entries in each queue */
#define BUF 2048           /* bytes per buffer: a 12-byte header and a frame */
#define HDR 12             /* struct virtio_net_hdr with num_buffers (5.1.6) */
#define RXQ_MEM 0x1000000ul /* desc, avail, used: a page each */
#define TXQ_MEM 0x1004000ul
#define RXBUF 0x1100000ul
#define TXBUF 0x1200000ul

struct desc { u64 addr; u32 len; u16 flags; u16 next; };
struct avail { u16 flags, idx, ring[Q], used_event; };
struct used_elem { u32 id, len; };
struct used { u16 flags, idx; struct used_elem ring[Q]; u16 avail_event; };
struct vq {
  struct desc *d;
  volatile struct avail *a;
  volatile struct used *u;
  volatile u16 *notify;
  u16 index;
  u16 last_used; /* next used entry to look at */
  u16 next;      /* avail.idx as this driver keeps it */
  u16 kicked;    /* avail.idx at the last notification decision */
};

static int no_event_idx; /* "noevidx" on the command line: notification flags only */
static volatile u8 *common; /* struct virtio_pci_common_cfg (4.1.4.3) */
static volatile u8 *devcfg;
static u64 notify_base;
static u32 notify_mult;
static struct vq rxq, txq;
static u8 mac[6];
static int event_idx; /* VIRTIO_F_EVENT_IDX negotiated (2.7.10), as Linux's driver does */

#define C32(o) (*(volatile u32 *)(common + (o)))
#define C16(o) (*(volatile u16 *)(common + (o)))
#define C8(o) (*(volatile u8 *)(common + (o)))

static void setup_queue(struct vq *q, u16 index, u64 mem, int rx) {
  q->index = index;
  q->d = (struct desc *)mem;
  q->a = (volatile struct avail *)(mem + 0x1000);
  q->u = (volatile struct used *)(mem + 0x2000);
  memset((void *)mem, 0, 0x3000);
  C16(0x16) = index;                 /* queue_select */
  u16 max = C16(0x18);
  if (max < Q) fail("queue smaller than 256 entries");
  C16(0x18) = Q;                     /* queue_size */
  for (u32 i = 0; i < Q; i++) {
    q->d[i].addr = (rx ? RXBUF : TXBUF) + (u64)i * BUF;
    q->d[i].len = BUF;
    q->d[i].flags = rx ? 2 : 0;      /* VIRTQ_DESC_F_WRITE for receive buffers */
  }
  q->a->flags = 1;                   /* VIRTQ_AVAIL_F_NO_INTERRUPT: this driver polls */
  C32(0x20) = (u32)mem; C32(0x24) = 0;                     /* queue_desc */
  C32(0x28) = (u32)(mem + 0x1000); C32(0x2c) = 0;          /* queue_driver */
  C32(0x30) = (u32)(mem + 0x2000); C32(0x34) = 0;          /* queue_device */
  q->notify = (volatile u16 *)(notify_base + (u64)C16(0x1e) * notify_mult);
  C16(0x1c) = 1;                     /* queue_enable */
}

/* Notifies the device of buffers added since the last call, unless it said
 * it does not need to know: with EVENT_IDX, when avail_event is not among
 * them; without, when the used ring's flags say VIRTQ_USED_F_NO_NOTIFY. */
static void kick(struct vq *q) {
  barrier();
  u16 old = q->kicked;
  q->kicked = q->next;
  if (old == q->next) return;
  int want = event_idx ? (u16)(q->next - q->u->avail_event - 1) < (u16)(q->next - old) : !(q->u->flags & 1);
  if (want) *q->notify = q->index;
}

/* This driver polls: with EVENT_IDX keep used_event far ahead of what the
 * device will reach before the next poll, so it never interrupts. */
static void no_interrupts(struct vq *q) {
  if (event_idx) q->a->used_event = (u16)(q->last_used + 0x7fff);
}

static void vnet_init(void) {
  for (u32 dev = 0; dev < 32 && !pci_addr; dev++) {
    pci_addr = 0x80000000u | dev << 11;
    u32 id = cfg_read(0);
    if (id != 0x10411af4 && id != 0x10001af4) pci_addr = 0;
  }
  if (!pci_addr) fail("no virtio-net card (1af4:1041 or 1af4:1000) on bus 0");
  cfg_write16(4, (u16)(cfg_read(4) | 6)); /* memory space, bus master */
  if (!(cfg_read(4) & (1 << 20))) fail("no capability list");
  for (u32 p = cfg_read(0x34) & 0xfc; p; p = (cfg_read(p) >> 8) & 0xfc) {
    u32 w0 = cfg_read(p);
    if ((w0 & 0xff) != 9) continue;   /* vendor-specific: a virtio capability */
    u32 type = w0 >> 24, bar = cfg_read(p + 4) & 0xff, off = cfg_read(p + 8);
    if (type != 1 && type != 2 && type != 4) continue; /* ISR and PCI-config access: unused */
    u64 at = bar_base(bar) + off;
    if (type == 1 && !common) common = (volatile u8 *)at;
    if (type == 2 && !notify_base) { notify_base = at; notify_mult = cfg_read(p + 16); }
    if (type == 4 && !devcfg) devcfg = (volatile u8 *)at;
  }
  if (!common || !notify_base || !devcfg) fail("virtio capabilities missing");
  C8(0x14) = 0;                      /* reset */
  while (C8(0x14)) {}
  C8(0x14) = 1 | 2;                  /* ACKNOWLEDGE | DRIVER */
  C32(0x00) = 0;
  u32 f0 = C32(0x04);
  C32(0x00) = 1;
  u32 f1 = C32(0x04);
  if (!(f1 & 1)) fail("no VIRTIO_F_VERSION_1");
  if (!(f0 & (1 << 5))) fail("no VIRTIO_NET_F_MAC");
  event_idx = (f0 & (1u << 29)) && !no_event_idx;
  C32(0x08) = 0; C32(0x0c) = 1 << 5 | (event_idx ? 1u << 29 : 0); /* VIRTIO_NET_F_MAC, VIRTIO_F_EVENT_IDX */
  C32(0x08) = 1; C32(0x0c) = 1;      /* VIRTIO_F_VERSION_1 */
  C8(0x14) = 1 | 2 | 8;              /* FEATURES_OK */
  if (!(C8(0x14) & 8)) fail("features refused");
  for (int i = 0; i < 6; i++) mac[i] = devcfg[i];
  C16(0x10) = 0xffff;                /* msix_config: no vector */
  setup_queue(&rxq, 0, RXQ_MEM, 1);
  setup_queue(&txq, 1, TXQ_MEM, 0);
  C8(0x14) = 1 | 2 | 4 | 8;          /* DRIVER_OK */
  for (u32 i = 0; i < Q; i++) rxq.a->ring[i] = (u16)i;
  rxq.next = Q;
  no_interrupts(&rxq);
  no_interrupts(&txq);
  barrier();
  rxq.a->idx = Q;
  kick(&rxq);
}

/* A transmit buffer to fill: its frame starts HDR bytes in. NULL when all Q are in flight. */
static u8 *tx_slot(void) {
  txq.last_used = txq.u->idx;
  no_interrupts(&txq);
  if ((u16)(txq.next - txq.last_used) >= Q) return 0;
  u8 *b = (u8 *)(TXBUF + (u64)(txq.next % Q) * BUF);
  memset(b, 0, HDR);
  return b + HDR;
}
static void tx_post(u32 frame_len) {
  u16 slot = txq.next % Q;
  txq.d[slot].len = HDR + frame_len;
  txq.a->ring[slot] = slot;
  txq.next++;
  barrier();
  txq.a->idx = txq.next;
}
/* kick() itself does nothing when no buffer was added since its last call. */
static void tx_flush(void) { kick(&txq); }

/* ---- Ethernet, IP ------------------------------------------------------ */

static u16 rd16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }
static u32 rd32(const u8 *p) { return (u32)p[0] << 24 | (u32)p[1] << 16 | (u32)p[2] << 8 | p[3]; }
static void wr16(u8 *p, u16 v) { p[0] = (u8)(v >> 8); p[1] = (u8)v; }
static void wr32(u8 *p, u32 v) { p[0] = (u8)(v >> 24); p[1] = (u8)(v >> 16); p[2] = (u8)(v >> 8); p[3] = (u8)v; }

static u32 sum16(const u8 *p, u32 n, u32 s) {
  for (; n > 1; n -= 2, p += 2) s += (u32)(p[0] << 8 | p[1]);
  if (n) s += (u32)p[0] << 8;
  return s;
}
static u16 fold(u32 s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (u16)~s;
}

static u32 my_ip, router_ip, server_id; /* as they lie in frames */
static u8 router_mac[6];
static const u8 bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static u8 *eth(u8 *f, const u8 *dst, u16 type) {
  memcpy(f, dst, 6);
  memcpy(f + 6, mac, 6);
  wr16(f + 12, type);
  return f + 14;
}
/* An IPv4 header (no options) for `len` bytes of payload; returns the payload. */
static u8 *ipv4(u8 *p, u8 proto, u32 src, u32 dst, u32 len) {
  static u16 id;
  memset(p, 0, 20);
  p[0] = 0x45;
  wr16(p + 2, (u16)(20 + len));
  wr16(p + 4, id++);
  wr16(p + 6, 0x4000); /* DF */
  p[8] = 64;
  p[9] = proto;
  memcpy(p + 12, &src, 4);
  memcpy(p + 16, &dst, 4);
  wr16(p + 10, fold(sum16(p, 20, 0)));
  return p + 20;
}

/* ---- DHCP --------------------------------------------------------------- */

#define XID 0x7e7b0001u
static int dhcp_state; /* 0 discover sent, 1 request sent, 2 bound */

static void dhcp_send(int type) {
  u8 *f = tx_slot();
  if (!f) fail("transmit queue full");
  u8 *ip = eth(f, bcast, 0x0800);
  u8 *udp = ipv4(ip, 17, 0, 0xffffffffu, 8 + 300);
  u8 *b = udp + 8;
  memset(udp, 0, 8 + 300);
  wr16(udp, 68); wr16(udp + 2, 67); wr16(udp + 4, 8 + 300);
  b[0] = 1; b[1] = 1; b[2] = 6;
  wr32(b + 4, XID);
  wr16(b + 10, 0x8000); /* broadcast replies */
  memcpy(b + 28, mac, 6);
  u8 *o = b + 236;
  wr32(o, 0x63825363); o += 4;
  *o++ = 53; *o++ = 1; *o++ = (u8)type;
  if (type == 3) {
    *o++ = 50; *o++ = 4; memcpy(o, &my_ip, 4); o += 4;
    *o++ = 54; *o++ = 4; memcpy(o, &server_id, 4); o += 4;
  }
  *o++ = 55; *o++ = 2; *o++ = 1; *o++ = 3;
  *o = 255;
  tx_post(14 + 20 + 8 + 300);
  tx_flush();
}

static void dhcp_input(const u8 *f, const u8 *b, u32 n) {
  if (n < 240 || b[0] != 2 || rd32(b + 4) != XID || rd32(b + 236) != 0x63825363) return;
  int type = 0;
  u32 router = 0, sid = 0;
  for (u32 i = 240; i < n && b[i] != 255;) {
    if (b[i] == 0) { i++; continue; }
    if (i + 2 > n || i + 2 + b[i + 1] > n) break;
    const u8 *v = b + i + 2;
    if (b[i] == 53 && b[i + 1] >= 1) type = v[0];
    if (b[i] == 3 && b[i + 1] >= 4) memcpy(&router, v, 4);
    if (b[i] == 54 && b[i + 1] >= 4) memcpy(&sid, v, 4);
    i += 2u + b[i + 1];
  }
  if (type == 2 && dhcp_state == 0) {
    memcpy(&my_ip, b + 16, 4);
    server_id = sid;
    dhcp_state = 1;
    dhcp_send(3);
  } else if (type == 5 && dhcp_state == 1) {
    memcpy(&my_ip, b + 16, 4);
    router_ip = router ? router : sid;
    memcpy(router_mac, f + 6, 6);
    dhcp_state = 2;
  }
}

/* ---- TCP ------------------------------------------------------------------ */

#define MSS 1460
#define WINDOW 65535
#define SNDBUF (256u * 1024) /* bytes the stream keeps for (re)transmission */
#define SNDBUF_MEM 0x1300000ul
#define MYPORT 40000
enum { CLOSED, SYN_SENT, ESTABLISHED, FIN_SENT, DONE };
static int state;
static u16 server_port;
static u32 iss = 0x10000, snd_una, snd_nxt, snd_end, rcv_nxt, peer_wnd;
static int need_ack;
static u64 last_progress;
static u8 *sndbuf = (u8 *)SNDBUF_MEM;
static const u64 RTO_CYCLES = 1ull << 31; /* ~0.5-1 s at a few GHz */

static void tcp_send(u8 flags, u32 seq, u32 len) {
  u8 *f = tx_slot();
  if (!f) return; /* the queue is full: the caller tries again later */
  u32 opt = (flags & 0x02) ? 4 : 0;
  u8 *t = ipv4(eth(f, router_mac, 0x0800), 6, my_ip, router_ip, 20 + opt + len);
  wr16(t, MYPORT);
  wr16(t + 2, server_port);
  wr32(t + 4, seq);
  wr32(t + 8, (flags & 0x10) ? rcv_nxt : 0);
  t[12] = (u8)((5 + opt / 4) << 4);
  t[13] = flags;
  wr16(t + 14, WINDOW);
  t[16] = t[17] = t[18] = t[19] = 0;
  if (opt) { t[20] = 2; t[21] = 4; wr16(t + 22, MSS); }
  u8 *d = t + 20 + opt;
  for (u32 i = 0; i < len;) { /* the stream's bytes, wrapping in the buffer */
    u32 at = (seq + i - iss - 1) % SNDBUF, n = len - i;
    if (n > SNDBUF - at) n = SNDBUF - at;
    memcpy(d + i, sndbuf + at, n);
    i += n;
  }
  u32 s = sum16((u8 *)&my_ip, 4, 0);
  s = sum16((u8 *)&router_ip, 4, s);
  s += 6 + 20 + opt + len;
  s = sum16(t, 20 + opt + len, s);
  wr16(t + 16, fold(s));
  tx_post(14 + 20 + 20 + opt + len);
  if (flags & 0x10) need_ack = 0;
}

/* Bytes the application may still add to the stream. */
static u32 snd_room(void) { return SNDBUF - (snd_end - snd_una); }
static void snd_append(const u8 *p, u32 n) {
  for (u32 i = 0; i < n; i++) sndbuf[(snd_end - iss - 1 + i) % SNDBUF] = p[i];
  snd_end += n;
}

/* ---- the host's commands ------------------------------------------------ */

static u8 cmd[5];
static u32 cmd_len;
static u32 download_left, upload_left, up_off, dl_off;
static int dl_check;
static int quit_asked;
static u32 pings, uploads, downloads;
static u8 pending_reply[64];
static u32 pending_replies;

static void app_input(const u8 *p, u32 n) {
  while (n) {
    if (download_left) {
      u32 k = n < download_left ? n : download_left;
      if (dl_check)
        for (u32 i = 0; i < k; i++, dl_off++)
          if (p[i] != (u8)('a' + dl_off % 26)) fail("downloaded data differs from what the host sent");
      download_left -= k; p += k; n -= k;
      if (!download_left) { pending_reply[pending_replies++ % 64] = 'k'; downloads++; }
      continue;
    }
    cmd[cmd_len++] = *p++;
    n--;
    u8 c = cmd[0];
    if (c == 'P') { pending_reply[pending_replies++ % 64] = 'p'; pings++; cmd_len = 0; }
    else if (c == 'Q') { quit_asked = 1; cmd_len = 0; }
    else if ((c == 'U' || c == 'D' || c == 'd') && cmd_len == 5) {
      u32 v = (u32)cmd[1] | (u32)cmd[2] << 8 | (u32)cmd[3] << 16 | (u32)cmd[4] << 24;
      if (c == 'U') { upload_left = v; up_off = 0; uploads++; }
      else {
        download_left = v;
        dl_check = c == 'd';
        dl_off = 0;
        if (!v) { pending_reply[pending_replies++ % 64] = 'k'; downloads++; }
      }
      cmd_len = 0;
    } else if (c != 'U' && c != 'D' && c != 'd') fail("unknown command from the host");
  }
}

static void app_output(void) {
  static u32 replied;
  while (replied != pending_replies && snd_room()) { snd_append(&pending_reply[replied % 64], 1); replied++; }
  static u8 pattern[4096 + 26];
  static int made;
  if (!made) { for (u32 i = 0; i < sizeof pattern; i++) pattern[i] = (u8)('a' + i % 26); made = 1; }
  while (upload_left && snd_room()) {
    u32 n = snd_room();
    if (n > upload_left) n = upload_left;
    if (n > 4096) n = 4096;
    snd_append(pattern + up_off % 26, n);
    upload_left -= n;
    up_off += n;
  }
}

static void tcp_input(const u8 *ip, const u8 *t, u32 n) {
  if (n < 20 || rd16(t) != server_port || rd16(t + 2) != MYPORT) return;
  u32 seq = rd32(t + 4), ack = rd32(t + 8);
  u8 flags = t[13];
  u32 hl = (u32)(t[12] >> 4) * 4;
  if (hl < 20 || hl > n) return;
  u32 len = n - hl;
  (void)ip;
  if (flags & 0x04) fail("connection reset by the host");
  if (state == SYN_SENT) {
    if ((flags & 0x12) == 0x12 && ack == iss + 1) {
      rcv_nxt = seq + 1;
      snd_una = snd_nxt = snd_end = iss + 1;
      peer_wnd = rd16(t + 14);
      state = ESTABLISHED;
      need_ack = 1;
      last_progress = rdtsc();
      puts_("netbench: connected\n");
    }
    return;
  }
  if (flags & 0x10) {
    if ((int32_t)(ack - snd_una) > 0 && (int32_t)(ack - snd_nxt) <= 0) {
      snd_una = ack;
      last_progress = rdtsc();
    }
    if (ack == snd_una) peer_wnd = rd16(t + 14);
  }
  if (len || (flags & 0x01)) {
    if (seq == rcv_nxt) {
      if (len) app_input(t + hl, len);
      rcv_nxt += len;
      if (flags & 0x01) { rcv_nxt++; if (state != FIN_SENT) fail("the host closed the connection"); state = DONE; }
    }
    need_ack = 1; /* in order: acknowledge it; out of order: a duplicate ACK */
  }
}

static void arp_input(const u8 *a, u32 n) {
  if (n < 28 || rd16(a) != 1 || rd16(a + 2) != 0x0800 || rd16(a + 6) != 1 || !my_ip) return;
  u32 tip;
  memcpy(&tip, a + 24, 4);
  if (tip != my_ip) return;
  u8 *f = tx_slot();
  if (!f) return;
  u8 *r = eth(f, a + 8, 0x0806);
  wr16(r, 1); wr16(r + 2, 0x0800); r[4] = 6; r[5] = 4; wr16(r + 6, 2);
  memcpy(r + 8, mac, 6);
  memcpy(r + 14, &my_ip, 4);
  memcpy(r + 18, a + 8, 10);
  tx_post(14 + 28);
}

static void poll_rx(void) {
  int any = 0;
  while (rxq.last_used != rxq.u->idx) {
    barrier();
    volatile struct used_elem *e = &rxq.u->ring[rxq.last_used % Q];
    u32 id = e->id, len = e->len;
    rxq.last_used++;
    if (id < Q && len > HDR + 14) {
      const u8 *f = (const u8 *)(RXBUF + (u64)id * BUF + HDR);
      u32 n = len - HDR;
      u16 type = rd16(f + 12);
      if (type == 0x0806) arp_input(f + 14, n - 14);
      else if (type == 0x0800 && n >= 34 && (f[14] >> 4) == 4) {
        const u8 *ip = f + 14;
        u32 ihl = (u32)(ip[0] & 15) * 4, tot = rd16(ip + 2);
        if (ihl >= 20 && tot >= ihl && tot <= n - 14) {
          if (ip[9] == 17 && tot >= ihl + 8 && rd16(ip + ihl + 2) == 68) dhcp_input(f, ip + ihl + 8, tot - ihl - 8);
          if (ip[9] == 6) tcp_input(ip, ip + ihl, tot - ihl);
        }
      }
    }
    rxq.a->ring[rxq.next % Q] = (u16)(id % Q);
    rxq.next++;
    any = 1;
  }
  if (any) {
    no_interrupts(&rxq);
    barrier();
    rxq.a->idx = rxq.next;
    kick(&rxq);
  }
}

/* ---- main ----------------------------------------------------------------- */

static int has_word(const char *c, const char *w) {
  for (; c && *c; c++) {
    u32 i = 0;
    while (w[i] && c[i] == w[i]) i++;
    if (!w[i]) return 1;
  }
  return 0;
}

static u32 arg_port(const char *c) {
  for (; c && *c; c++) {
    if (c[0] == 'p' && c[1] == 'o' && c[2] == 'r' && c[3] == 't' && c[4] == '=') {
      u32 v = 0;
      for (c += 5; *c >= '0' && *c <= '9'; c++) v = v * 10 + (u32)(*c - '0');
      return v;
    }
  }
  return 0;
}

void __attribute__((noreturn, section(".text.entry"))) netmain(const char *cmdline) {
  server_port = (u16)arg_port(cmdline);
  if (!server_port) fail("no port=N on the command line");
  no_event_idx = has_word(cmdline, "noevidx");
  vnet_init();
  puts_(event_idx ? "netbench: virtio-net up, event index\n" : "netbench: virtio-net up, no event index\n");
  u64 t = rdtsc();
  dhcp_send(1);
  while (dhcp_state != 2) {
    poll_rx();
    tx_flush();
    if (rdtsc() - t > 8 * RTO_CYCLES) { t = rdtsc(); dhcp_state = 0; dhcp_send(1); }
  }
  puts_("netbench: DHCP ");
  putip(my_ip);
  puts_(" via ");
  putip(router_ip);
  putc_('\n');
  state = SYN_SENT;
  t = rdtsc();
  tcp_send(0x02, iss, 0);
  tx_flush();
  while (state == SYN_SENT) {
    poll_rx();
    tx_flush();
    if (rdtsc() - t > RTO_CYCLES) { t = rdtsc(); tcp_send(0x02, iss, 0); tx_flush(); }
  }
  for (;;) {
    poll_rx();
    app_output();
    /* Send what the window allows, MSS at a time. */
    while (snd_nxt != snd_end) {
      u32 inflight = snd_nxt - snd_una, wnd = peer_wnd;
      if (inflight >= wnd) break;
      u32 n = snd_end - snd_nxt;
      if (n > MSS) n = MSS;
      if (n > wnd - inflight) n = wnd - inflight;
      u32 before = txq.next;
      tcp_send(0x18, snd_nxt, n); /* ACK | PSH */
      if (txq.next == before) break; /* the queue is full */
      snd_nxt += n;
    }
    if (quit_asked && state == ESTABLISHED && snd_una == snd_end) {
      tcp_send(0x11, snd_nxt, 0); /* FIN | ACK */
      snd_nxt++;
      snd_end++;
      state = FIN_SENT;
      t = rdtsc();
    }
    if (need_ack) tcp_send(0x10, snd_nxt, 0);
    tx_flush();
    if (state == DONE || (state == FIN_SENT && rdtsc() - t > 4 * RTO_CYCLES)) break;
    /* Nothing acknowledged for a while with data out: go back to the oldest byte. */
    if (snd_nxt != snd_una && rdtsc() - last_progress > RTO_CYCLES) {
      snd_nxt = snd_una;
      if (state == FIN_SENT) { tcp_send(0x11, snd_una, 0); snd_nxt = snd_una + 1; tx_flush(); }
      last_progress = rdtsc();
    }
  }
  puts_("netbench: done, ");
  putdec(pings);
  puts_(" pings, ");
  putdec(uploads);
  puts_(" uploads, ");
  putdec(downloads);
  puts_(" downloads\n");
  quit(0);
}
