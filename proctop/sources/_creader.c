/* The compiled half of the C socket reader (proctop.sources.creader): a pthread
 * that does recv, decode, the user-space filter and the /proc reads of an exec'd
 * or dying process without the GIL, and keeps what it took as plain C records
 * until the consumer's take() turns them into Python objects under the GIL.
 *
 * The wire format and the filter are those of proctop.kernel.protocol
 * (decode_buffer, mask_accepts) and proctop.sources.reader (SocketReader._take);
 * the reads are those of proctop.model.procfs.snapshot, kept as raw bytes and
 * parsed in Python (procfs.parse_stat, parse_cmdline) so both readers name a
 * process alike. Everything from the kernel and from /proc is untrusted: every
 * length is checked against what was received or read.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <linux/netlink.h>

/* The kinds the thread acts on (names live through fork, exec and exit); every kind's wire layout
 * comes from protocol.LAYOUTS at construction (Wire), so a new kind needs nothing here. */
#define EV_NONE 0x00000000u
#define EV_FORK 0x00000001u
#define EV_EXEC 0x00000002u
#define EV_NONZERO_EXIT 0x20000000u
#define EV_EXIT 0x80000000u

/* One kind's layout (protocol.Layout): bytes of event_data it needs, the offset of each RawEvent
 * field in it (pid tgid ppid ptgid a b comm; -1: not in this kind), and which parts of the kmod
 * names extension it keeps (0 none, 1 comm, 2 comm and argv). Indexed by the bit of ``what``. */
enum { W_PID, W_TGID, W_PPID, W_PTGID, W_A, W_B, W_COMM, W_FIELDS };
typedef struct {
    long size; /* 0: no such kind */
    int off[W_FIELDS];
    int names;
} Wire;

#define HEAD_SIZE 52      /* nlmsghdr + cn_msg + what, cpu, timestamp */
#define NAMES_SIZE 24     /* kmod struct ptc_names before argv */
#define NAMES_MAGIC 0x4E435450u
#define RECV_SIZE 65536
#define BATCH 4096
#define BATCH_HARD 65536
#define POLL_MS 250
#define FILE_MAX (4u << 20) /* a /proc file read past this is cut (argv can be anything) */
#define LINK_MAX 4096

typedef struct {
    char *data; /* NULL: the read failed */
    size_t len;
} Bytes;

enum { IT_EVENT, IT_LOST, IT_INTRO };

/* What one /proc read of a process gave (procfs.snapshot's reads), shared by the event that made it
 * and the records of the processes it names (an exec'd process and the children it forks): reference
 * counted (the consumer's take drops the events' references, the thread the records'), and unsaid in
 * place when its pid may have been reused before it ended (reader.EventTaker._unsure). */
typedef struct Reads {
    int refs;   /* atomic */
    int unsaid; /* written by the thread before the event or record holding it is queued */
    int64_t end_ns;
    int64_t argv_end_ns; /* when argv (the first read, the one racing the exit) was in hand; 0: not read */
    Bytes cmdline, exe, stat, cgroup;
    int uid_ok;
    uint32_t uid;
    size_t size; /* bytes held, for the records' budget */
} Reads;

typedef struct Item {
    struct Item *next;
    int kind;
    uint32_t what, cpu, pid, tgid, ppid, ptgid, a, b, seq;
    uint64_t ts;
    char comm[16];
    size_t comm_len;
    Bytes argv;   /* kmod names extension */
    Reads *reads; /* IT_EVENT: /proc as read at once (NULL: not read); IT_INTRO: the names */
    /* IT_INTRO (reader.Intro): pid, ts (start_ns), own; ppid and uid: -1 for None; cg: whose cgroup */
    int own;
    int64_t ippid, iuid;
    Reads *cg;
} Item;

typedef struct Batch {
    struct Batch *next;
    Item *head, *tail;
    size_t n;
    long long dropped; /* events dropped from a full queue after this batch */
    int64_t queued_ns; /* when it was handed over (monotonic) */
    int drained;       /* the socket was empty at its end: its reads stand */
} Batch;

/* reader.EventTaker._announced in C: processes whose fork or named exec went by, oldest evicted first
 * past ANNOUNCED_MAX (an insertion-ordered set: a hash of pid -> stamp, and a ring of (pid, stamp) in
 * insertion order whose entries are stale once their pid was removed or added again). */
#define ANNOUNCED_MAX 32768
#define SLOTS (2 * ANNOUNCED_MAX) /* a power of two, at most half full */
#define RING (2 * ANNOUNCED_MAX)

/* A record (reader.Known): the slot of a live process the thread saw fork or exec. */
typedef struct {
    uint32_t pid;
    uint32_t used;
    uint64_t stamp;
    uint64_t start_ns;
    int64_t ppid, uid; /* -1: None */
    Reads *names;      /* NULL: nameless */
    Reads *cg;         /* whose cgroup stands where the names lack one (NULL: None) */
    int own, announced;
    int handed; /* introduced already (reader.Known.handed) */
    size_t size; /* what it counts against NAMES_BYTES_MAX */
} Slot;

typedef struct {
    uint32_t pid;
    uint64_t stamp;
} RingEntry;

typedef struct {
    Slot *slots;
    RingEntry *ring, *spare; /* spare: where a full ring is squeezed */
    size_t head, len; /* ring: oldest at head */
    size_t count;
    uint64_t next_stamp;
    size_t bytes; /* the records' reads, each counted once per record that holds them */
} Announced;

/* Reads pending until the socket is drained (reader.EventTaker._pending): an array, and a hash of
 * pid -> its newest entry (entries of one pid chained by `prev`); emptied at every batch's end. */
#define PENDING_SLOTS (4 * BATCH_HARD)
typedef struct {
    uint32_t tgid;
    int64_t end_ns;
    Reads *reads;
    long prev;
    size_t slot; /* its pid's slot: slots never move within a batch, and are emptied without probing */
} PendingRead;

typedef struct {
    uint32_t pid;
    uint32_t used;
    long head; /* -1: popped by a fork */
} PendingSlot;

typedef struct {
    PendingRead *reads;
    size_t n, cap;
    PendingSlot *slots;
} Pending;

typedef struct {
    PyObject_HEAD
    int fd;
    uint32_t idx;
    int threads;
    long long queue_max;
    volatile uint32_t mask, names_bits; /* written by the control thread, one word each */
    uint32_t all_mask; /* protocol.PROC_EVENT_ALL: every kind and NONZERO_EXIT */
    Wire wire[32];     /* by the bit of what */
    volatile int stop;
    volatile int stopped;
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    Batch *qhead, *qtail; /* under lock */
    long long held;       /* items queued, under lock */
    char error[160];      /* set once by the thread before `stopped` */
    Announced announced;  /* the records of live processes: the thread's alone */
    Pending pending;      /* the thread's alone */
    /* the thread's counters: written by it alone */
    volatile long long received, filtered, names_only, malformed, acks, errors, other, lost;
} CReader;

/* The records' reads past this many bytes (each counted once per record holding them, so a shared
 * argv counts for every child) evict the oldest records: names are bounded, a 2 MB argv included. */
#define NAMES_BYTES_MAX (24u << 20)
/* reader._REUSE_MARGIN_NS */
#define REUSE_MARGIN_NS 1000000LL
/* take_raw's linger (see there) */
#define LINGER_NS 5000000LL
#define LINGER_ITEMS 1024

/* --- helpers -------------------------------------------------------- */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint32_t u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t u16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint64_t u64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static void bytes_free(Bytes *b) { free(b->data); b->data = NULL; b->len = 0; }

static int bytes_set(Bytes *b, const void *src, size_t len) {
    b->data = malloc(len ? len : 1);
    if (!b->data) return -1;
    memcpy(b->data, src, len);
    b->len = len;
    return 0;
}

static Reads *reads_ref(Reads *r) {
    if (r) __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
    return r;
}

static void reads_unref(Reads *r) {
    if (!r || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
    bytes_free(&r->cmdline);
    bytes_free(&r->exe);
    bytes_free(&r->stat);
    bytes_free(&r->cgroup);
    free(r);
}

static void item_free(Item *it) {
    bytes_free(&it->argv);
    reads_unref(it->reads);
    reads_unref(it->cg);
    free(it);
}

static void batch_free(Batch *b) {
    Item *it = b->head;
    while (it) { Item *next = it->next; item_free(it); it = next; }
    free(b);
}

static void batch_add(Batch *b, Item *it) {
    it->next = NULL;
    if (b->tail) b->tail->next = it; else b->head = it;
    b->tail = it;
    b->n++;
}

/* A whole /proc file as procfs.read_file reads it: one read of 4096, more only if it was full. */
static int read_whole(const char *path, Bytes *out) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) { close(fd); return -1; }
    ssize_t n = read(fd, buf, 4096);
    if (n < 0) goto fail;
    len = (size_t)n;
    if (len == 4096) {
        for (;;) {
            if (len >= FILE_MAX) break;
            if (cap - len < 65536) {
                size_t ncap = cap * 2 < len + 65536 ? len + 65536 : cap * 2;
                char *nb = realloc(buf, ncap);
                if (!nb) goto fail;
                buf = nb;
                cap = ncap;
            }
            n = read(fd, buf + len, 65536);
            if (n < 0) goto fail;
            if (n == 0) break;
            len += (size_t)n;
        }
    }
    close(fd);
    if (cap > len) { /* to fit: the records keep these (a 4 KB buffer per file held 100 MB at scale) */
        char *fit = realloc(buf, len ? len : 1);
        if (fit) buf = fit;
    }
    out->data = buf;
    out->len = len;
    return 0;
fail:
    free(buf);
    close(fd);
    return -1;
}

/* procfs.snapshot(pid, argv=..., cgroup=True), its reads only, in its order; NULL out of memory. */
static Reads *read_proc(uint32_t pid, int argv) {
    Reads *it = calloc(1, sizeof *it);
    if (!it) return NULL;
    it->refs = 1;
    char path[64];
    if (argv) {
        snprintf(path, sizeof path, "/proc/%u/cmdline", pid);
        read_whole(path, &it->cmdline);
        it->argv_end_ns = now_ns();
        char link[LINK_MAX];
        snprintf(path, sizeof path, "/proc/%u/exe", pid);
        ssize_t n = readlink(path, link, sizeof link);
        if (n >= 0) bytes_set(&it->exe, link, (size_t)n);
    }
    snprintf(path, sizeof path, "/proc/%u/stat", pid);
    if (read_whole(path, &it->stat) == 0) {
        struct stat st;
        snprintf(path, sizeof path, "/proc/%u", pid);
        if (stat(path, &st) == 0) {
            it->uid_ok = 1;
            it->uid = st.st_uid;
            snprintf(path, sizeof path, "/proc/%u/cgroup", pid);
            read_whole(path, &it->cgroup);
        }
    }
    it->end_ns = now_ns();
    it->size = sizeof *it + it->cmdline.len + it->exe.len + it->stat.len + it->cgroup.len;
    return it;
}


static size_t slot_of(const Announced *a, uint32_t pid) {
    size_t i = (size_t)(pid * 2654435761u) & (SLOTS - 1);
    while (a->slots[i].used && a->slots[i].pid != pid) i = (i + 1) & (SLOTS - 1);
    return i;
}

static Slot *ann_get(Announced *a, uint32_t pid) {
    Slot *s = &a->slots[slot_of(a, pid)];
    return s->used ? s : NULL;
}

static void slot_release(Announced *a, Slot *s) {
    reads_unref(s->names);
    reads_unref(s->cg);
    s->names = s->cg = NULL;
    a->bytes -= s->size;
}

static void ann_del(Announced *a, uint32_t pid) {
    size_t i = slot_of(a, pid);
    if (!a->slots[i].used) return;
    slot_release(a, &a->slots[i]);
    a->slots[i].used = 0;
    a->count--;
    /* backward-shift deletion keeps every probe chain unbroken */
    size_t j = i;
    for (;;) {
        j = (j + 1) & (SLOTS - 1);
        if (!a->slots[j].used) break;
        size_t home = (size_t)(a->slots[j].pid * 2654435761u) & (SLOTS - 1);
        if (((j - home) & (SLOTS - 1)) >= ((j - i) & (SLOTS - 1))) {
            a->slots[i] = a->slots[j];
            a->slots[j].used = 0;
            i = j;
        }
    }
}

static void ann_clear(Announced *a) {
    for (size_t i = 0; i < SLOTS; i++)
        if (a->slots[i].used) slot_release(a, &a->slots[i]);
    memset(a->slots, 0, SLOTS * sizeof *a->slots);
    a->head = a->len = a->count = 0;
}

static int ann_live(const Announced *a, const RingEntry *e) {
    const Slot *s = &a->slots[slot_of(a, e->pid)];
    return s->used && s->stamp == e->stamp;
}

/* EventTaker._remember: past ANNOUNCED_MAX (or the bytes' budget) the longest known is forgotten.
 * `rec` is copied in, with the references it holds. */
static void ann_add(Announced *a, uint32_t pid, const Slot *rec) {
    while ((a->count >= ANNOUNCED_MAX || a->bytes + rec->size > NAMES_BYTES_MAX) && a->len) {
        RingEntry e = a->ring[a->head];
        a->head = (a->head + 1) % RING;
        a->len--;
        if (ann_live(a, &e)) ann_del(a, e.pid);
    }
    if (a->len == RING) { /* more stale entries than live ones: squeeze them out, in order */
        size_t kept = 0;
        for (size_t k = 0; k < a->len; k++) {
            RingEntry e = a->ring[(a->head + k) % RING];
            if (ann_live(a, &e)) a->spare[kept++] = e;
        }
        RingEntry *t = a->ring;
        a->ring = a->spare;
        a->spare = t;
        a->head = 0;
        a->len = kept;
    }
    size_t i = slot_of(a, pid);
    if (!a->slots[i].used) a->count++;
    else slot_release(a, &a->slots[i]);
    a->slots[i] = *rec;
    a->bytes += rec->size;
    a->slots[i].used = 1;
    a->slots[i].pid = pid;
    a->slots[i].stamp = ++a->next_stamp;
    a->ring[(a->head + a->len) % RING] = (RingEntry){pid, a->next_stamp};
    a->len++;
}

/* int(token) in Python, for the bytes of one stat field: spaces, a sign, digits (single '_' between) */
static int py_int_ok(const char *p, size_t n) {
    size_t i = 0;
    while (i < n && (p[i] == ' ' || (p[i] >= '\t' && p[i] <= '\r'))) i++;
    if (i < n && (p[i] == '+' || p[i] == '-')) i++;
    size_t digits = 0;
    while (i < n && ((p[i] >= '0' && p[i] <= '9') || (p[i] == '_' && digits && i + 1 < n && p[i + 1] >= '0' && p[i + 1] <= '9'))) {
        if (p[i] != '_') digits++;
        i++;
    }
    if (!digits) return 0;
    while (i < n && (p[i] == ' ' || (p[i] >= '\t' && p[i] <= '\r'))) i++;
    return i == n;
}

/* procfs.parse_stat's verdict: -1 does not parse, else whether the comm is non-empty */
static int stat_comm(const Bytes *stat) {
    const char *d = stat->data;
    size_t n = stat->len;
    const char *close = NULL, *open = memchr(d, '(', n);
    for (size_t k = n; k-- > 0;) if (d[k] == ')') { close = d + k; break; }
    if (!close || !open) return -1;
    size_t start = (size_t)(close - d) + 2;
    const char *f = d + (start < n ? start : n), *end = d + n;
    /* fields = rest.split(b" ", 20): fields 1 and 19 are single tokens */
    const char *tok[21];
    size_t ntok = 0;
    tok[ntok++] = f;
    for (const char *q = f; q < end && ntok < 21; q++) if (*q == ' ') tok[ntok++] = q + 1;
    if (ntok < 20) return -1;
    for (int which = 1; which <= 19; which += 18) {
        const char *t = tok[which];
        const char *te = (size_t)which + 1 < ntok ? tok[which + 1] - 1 : end;
        if (!py_int_ok(t, (size_t)(te - t))) return -1;
    }
    return open + 1 < close;
}

/* Would procfs.snapshot have returned a Snapshot (not None) from these reads? */
static int reads_found(const Reads *r) {
    if (!r) return 0;
    if (r->stat.data && r->uid_ok) return stat_comm(&r->stat) >= 0;
    return (r->cmdline.data && r->cmdline.len) || (r->exe.data && r->exe.len);
}

/* Would the exec's Snapshot, after kernel_names, name the process (EventTaker._keep's `named`)? */
static int exec_named(const Item *it, const Reads *r) {
    if (it->comm_len) return 1; /* the kmod's comm: kernel_names fills it in */
    if (!r) return 0;
    int cmdline = r->cmdline.data && r->cmdline.len;
    if (!r->stat.data || !r->uid_ok) return cmdline;
    int comm = stat_comm(&r->stat);
    return comm < 0 ? 0 : (comm || cmdline);
}

/* The ppid field of a stat that parses (stat_comm >= 0) */
static int64_t stat_ppid(const Bytes *stat) {
    const char *d = stat->data, *close = NULL;
    for (size_t k = stat->len; k-- > 0;) if (d[k] == ')') { close = d + k; break; }
    const char *end = d + stat->len, *q = close + 2 < end ? close + 2 : end;
    while (q < end && *q != ' ') q++; /* the state */
    char num[32];
    size_t n = 0;
    for (q++; q < end && *q != ' ' && n < sizeof num - 1; q++) if (*q != '_') num[n++] = *q;
    num[n] = 0;
    return strtoll(num, NULL, 10);
}

/* The names a record stands on, as a Snapshot would say them: NULL when nameless, unsaid or found nothing */
static const Reads *snap_of(const Reads *r) {
    return r && !r->unsaid && reads_found(r) ? r : NULL;
}

/* reader.Known.effective: ppid, uid and (whose) cgroup as the enricher's table entry would have them */
static void effective(const Slot *k, int64_t *ppid, int64_t *uid, Reads **cg) {
    const Reads *s = snap_of(k->names);
    int stat_ok = s && s->stat.data && s->uid_ok;
    *ppid = k->own && stat_ok ? stat_ppid(&s->stat) : k->ppid;
    *uid = stat_ok ? (int64_t)s->uid : k->uid;
    *cg = stat_ok && s->cgroup.data ? (Reads *)s : k->cg;
}

/* protocol.mask_accepts */
static int mask_accepts(uint32_t mask, uint32_t all, uint32_t what, uint32_t code) {
    if (mask == 0 || mask == all) return 1;
    if ((mask & EV_NONZERO_EXIT) && what == EV_EXIT && code) return 1;
    return (mask & what) != 0;
}

/* protocol._names: comm and argv of the kmod extension after the 24-byte event_data. */
static void take_names(Item *it, const unsigned char *body, long room) {
    if (room < 24 + NAMES_SIZE) return;
    const unsigned char *n = body + 24;
    if (u32(n) != NAMES_MAGIC) return;
    size_t argv_len = u16(n + 4);
    size_t present = (size_t)(room - 24 - NAMES_SIZE);
    const unsigned char *comm = n + 8;
    size_t cl = 0;
    while (cl < 16 && comm[cl]) cl++;
    memcpy(it->comm, comm, cl);
    it->comm_len = cl;
    if (argv_len > present) argv_len = present;
    bytes_set(&it->argv, n + NAMES_SIZE, argv_len);
}

/* protocol._decode_one; returns a new Item, or NULL (counted) */
static Item *decode_one(CReader *r, const unsigned char *buf, size_t off, size_t end) {
    const unsigned char *m = buf + off;
    uint32_t cn_idx = u32(m + 16), cn_seq = u32(m + 24);
    uint16_t cn_len = u16(m + 32);
    uint32_t what = u32(m + 36), cpu = u32(m + 40);
    uint64_t ts = u64(m + 44);
    if (cn_idx != r->idx) { r->other++; return NULL; }
    const unsigned char *body = m + HEAD_SIZE;
    size_t lim = off + 36 + (size_t)cn_len;
    long room = (long)((end < lim ? end : lim)) - (long)(off + HEAD_SIZE);
    if (what == EV_NONE) { r->acks++; return NULL; }
    const Wire *w = (what & (what - 1)) ? NULL : &r->wire[__builtin_ctz(what)];
    if (!w || !w->size || room < w->size) { r->malformed++; return NULL; } /* unknown kind, or cut */
    Item *it = calloc(1, sizeof *it);
    if (!it) return NULL;
    it->kind = IT_EVENT;
    it->what = what; it->cpu = cpu; it->ts = ts; it->seq = cn_seq;
    uint32_t *field[W_COMM] = {&it->pid, &it->tgid, &it->ppid, &it->ptgid, &it->a, &it->b};
    for (int f = 0; f < W_COMM; f++)
        if (w->off[f] >= 0) *field[f] = u32(body + w->off[f]);
    if (w->off[W_COMM] >= 0) { /* comm in event_data (PROC_EVENT_COMM) */
        const unsigned char *c = body + w->off[W_COMM];
        size_t cl = 0;
        while (cl < 16 && c[cl]) cl++;
        memcpy(it->comm, c, cl);
        it->comm_len = cl;
    }
    if (w->names && room > 24) { /* the kmod's names after the union */
        take_names(it, body, room);
        if (w->names < 2) bytes_free(&it->argv);
    }
    return it;
}

/* --- pending reads (reader.EventTaker._pending, _forked, _unsure) -------------------- */

static size_t pending_slot(const Pending *p, uint32_t pid) {
    size_t i = (size_t)(pid * 2654435761u) & (PENDING_SLOTS - 1);
    while (p->slots[i].used && p->slots[i].pid != pid) i = (i + 1) & (PENDING_SLOTS - 1);
    return i;
}

/* A read that found the process, pending until the socket is drained. */
static void pending_add(Pending *p, uint32_t tgid, Reads *r) {
    if (p->n == p->cap) { /* more reads than BATCH_HARD events in one batch cannot be */
        size_t ncap = p->cap ? 2 * p->cap : 1024;
        if (ncap > PENDING_SLOTS / 2) return; /* never: the hash stays at most half full */
        PendingRead *nr = realloc(p->reads, ncap * sizeof *nr);
        if (!nr) return;
        p->reads = nr;
        p->cap = ncap;
    }
    size_t i = pending_slot(p, tgid);
    PendingSlot *s = &p->slots[i];
    if (!s->used) { s->used = 1; s->pid = tgid; s->head = -1; }
    p->reads[p->n] = (PendingRead){tgid, r->end_ns, reads_ref(r), s->head, i};
    s->head = (long)p->n++;
}

/* A fork of a pid read lately: unsay the reads that ended too close before it (EventTaker._forked). */
static void pending_forked(Pending *p, uint32_t pid, uint64_t ts) {
    if (!p->n) return;
    PendingSlot *s = &p->slots[pending_slot(p, pid)];
    if (!s->used) return;
    for (long k = s->head; k >= 0; k = p->reads[k].prev)
        if ((int64_t)ts < p->reads[k].end_ns + REUSE_MARGIN_NS) p->reads[k].reads->unsaid = 1;
    s->head = -1;
}

/* The batch ends: its reads stand (drained) or are unsaid (EventTaker._unsure); the record is emptied. */
static void pending_end(Pending *p, int stand) {
    for (size_t k = 0; k < p->n; k++) {
        PendingSlot *s = &p->slots[p->reads[k].slot];
        if (!stand && s->head >= 0) {
            for (long j = s->head; j >= 0; j = p->reads[j].prev) p->reads[j].reads->unsaid = 1;
        }
        s->head = -1;
    }
    for (size_t k = 0; k < p->n; k++) {
        p->slots[p->reads[k].slot].used = 0;
        reads_unref(p->reads[k].reads);
    }
    p->n = 0;
}

/* --- the record of live processes, and introductions ----------------------------------- */

/* EventTaker._introduce: what the thread knows of the process (and parent) of a shown event */
static void introduce(CReader *r, const Item *ev, Batch *b) {
    uint32_t pids[2];
    int n = 0;
    if (ev->what != EV_FORK) pids[n++] = ev->tgid;
    if (ev->what == EV_FORK || ev->what == EV_EXIT) pids[n++] = ev->ptgid;
    for (int k = 0; k < n; k++) {
        Slot *s = ann_get(&r->announced, pids[k]);
        if (!s || s->handed) continue;
        s->handed = 1;
        Item *it = calloc(1, sizeof *it);
        if (!it) return;
        it->kind = IT_INTRO;
        it->pid = pids[k];
        it->ts = s->start_ns;
        it->ippid = s->ppid;
        it->own = s->own;
        it->iuid = s->uid;
        it->reads = reads_ref(s->names);
        it->cg = reads_ref(s->cg);
        batch_add(b, it);
    }
}

/* reader._take's verdict for one decoded event, then EventTaker._keep: the reads, the record of live
 * processes, the introductions; a shown event is added to the batch, any other dropped */
static void take_event(CReader *r, Item *it, Batch *b, int *reads) {
    uint32_t mask = r->mask, names_bits = r->names_bits, what = it->what;
    int shown;
    r->received++;
    if (what == EV_FORK) pending_forked(&r->pending, it->pid, it->ts);
    if (mask && mask_accepts(mask, r->all_mask, what, it->a) && (r->threads || it->pid == it->tgid)) shown = 1;
    else if ((what & names_bits) && it->pid == it->tgid) { shown = 0; r->names_only++; }
    else { r->filtered++; item_free(it); return; }
    if (shown && names_bits) introduce(r, it, b);
    Announced *a = &r->announced;
    Reads *rd = NULL;
    if (what == EV_EXEC) {
        rd = read_proc(it->tgid, 1);
        (*reads)++;
        Slot rec = {0};
        const Slot *old = ann_get(a, it->tgid);
        if (old) {
            Reads *cg;
            effective(old, &rec.ppid, &rec.uid, &cg);
            rec.start_ns = old->start_ns;
            rec.cg = reads_ref(cg);
        } else {
            rec.start_ns = it->ts;
            rec.ppid = rec.uid = -1;
        }
        rec.names = reads_ref(rd);
        rec.own = 1;
        rec.handed = shown; /* the consumer's table has it from the event */
        rec.announced = exec_named(it, rd);
        rec.size = sizeof rec + (rd ? rd->size : 0);
        ann_add(a, it->tgid, &rec);
        if (reads_found(rd)) pending_add(&r->pending, it->tgid, rd);
    } else if (what == EV_FORK && it->pid == it->tgid) { /* a new process, named after its parent until it execs */
        ann_del(a, it->tgid);
        const Slot *parent = ann_get(a, it->ptgid);
        Slot rec = {0};
        rec.start_ns = it->ts;
        rec.ppid = it->ptgid;
        rec.uid = -1;
        rec.handed = shown;
        if (parent) {
            int64_t ignored;
            Reads *cg;
            effective(parent, &ignored, &rec.uid, &cg);
            rec.cg = reads_ref(cg);
            rec.names = reads_ref(parent->names);
            rec.announced = parent->announced;
            rec.size = sizeof rec + (parent->names ? parent->names->size : 0);
        } else {
            rec.size = sizeof rec;
        }
        ann_add(a, it->tgid, &rec);
    } else if (what == EV_EXIT && it->pid == it->tgid) {
        const Slot *rec = ann_get(a, it->tgid);
        int announced = rec && rec->announced; /* named from events: not read */
        ann_del(a, it->tgid);
        if (!announced) {
            rd = read_proc(it->tgid, 0);
            (*reads)++;
            if (reads_found(rd)) pending_add(&r->pending, it->tgid, rd);
        }
    }
    if (shown) {
        it->reads = rd;
        batch_add(b, it);
    } else {
        reads_unref(rd);
        item_free(it);
    }
}

/* protocol.decode_buffer over one datagram */
static void take_datagram(CReader *r, const unsigned char *buf, size_t n, Batch *b, int *reads) {
    size_t off = 0;
    while (off + 16 <= n) {
        uint32_t nl_len = u32(buf + off);
        uint16_t nl_type = u16(buf + off + 4);
        if (nl_len < 16 || (size_t)nl_len > n - off) { r->malformed++; break; }
        size_t end = off + nl_len;
        if (nl_type == NLMSG_ERROR) r->errors++;
        else if (nl_len < HEAD_SIZE) r->malformed++;
        else {
            Item *it = decode_one(r, buf, off, end);
            if (it) take_event(r, it, b, reads);
        }
        off += ((size_t)nl_len + 3) & ~(size_t)3;
    }
}

static void add_lost(CReader *r, Batch *b) {
    ann_clear(&r->announced); /* forks and execs may have been among the lost: a pid may have been reused unseen */
    pending_end(&r->pending, 0); /* a fork that reused the pid of a read may be among the lost */
    Item *it = calloc(1, sizeof *it);
    if (!it) return;
    it->kind = IT_LOST;
    batch_add(b, it);
}

/* Hand a batch over, dropping (and counting) what a full queue has no room for. */
static void queue_batch(CReader *r, Batch *b) {
    pthread_mutex_lock(&r->lock);
    long long room = r->queue_max - r->held;
    if (room < 0) room = 0;
    if ((long long)b->n > room) {
        long long over = (long long)b->n - room;
        Item *it = b->head, *last = NULL;
        for (long long i = 0; i < room; i++) { last = it; it = it->next; }
        while (it) { Item *next = it->next; item_free(it); it = next; }
        if (last) last->next = NULL; else b->head = NULL;
        b->tail = last;
        b->n = (size_t)room;
        r->lost += over;
        b->dropped += over;
    }
    if (b->n == 0 && r->qtail && b->dropped) { /* one count for a whole run of drops */
        r->qtail->dropped += b->dropped;
        free(b);
    } else if (b->n == 0 && !b->dropped) {
        /* nothing shown (names-only events, filtered ones): the consumer sleeps on. Waking it for
         * nothing cost a Python turn per drain: its thread's CPU over a 20,000-fork storm under
         * nonzero-exit, 10-15 ticks of the process's 27-47 before, 4-7 after (load 6) */
        free(b);
        pthread_mutex_unlock(&r->lock);
        return;
    } else {
        b->queued_ns = now_ns();
        if (r->qtail) r->qtail->next = b; else r->qhead = b;
        r->qtail = b;
        r->held += (long long)b->n;
    }
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static void *read_loop(void *arg) {
    CReader *r = arg;
    unsigned char *buf = malloc(RECV_SIZE);
    if (!buf) {
        snprintf(r->error, sizeof r->error, "reading process events failed: out of memory");
        goto out;
    }
    struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
    while (!r->stop) {
        int ready = poll(&pfd, 1, POLL_MS);
        if (ready <= 0) continue; /* timeout or EINTR: look at the stop flag */
        Batch *b = calloc(1, sizeof *b);
        if (!b) continue;
        int reads = 0, fatal = 0;
        long long first = r->received;
        while (!r->stop && (r->received - first < BATCH || (r->pending.n && r->received - first < BATCH_HARD))) {
            struct sockaddr_storage from;
            socklen_t flen = sizeof from;
            ssize_t n = recvfrom(r->fd, buf, RECV_SIZE, MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) { b->drained = 1; }
                else if (errno == ENOBUFS) { r->lost++; add_lost(r, b); }
                else if (errno == EINTR) { }
                else {
                    if (!r->stop)
                        snprintf(r->error, sizeof r->error, "reading process events failed: %s", strerror(errno));
                    add_lost(r, b);
                    fatal = 1;
                }
                break;
            }
            /* Only the kernel sends from port 0; any local process may unicast to ours.
             * A socket that is not netlink (the tests' socketpair) has no ports: all of it counts as the kernel's. */
            if (flen >= sizeof(struct sockaddr_nl) && from.ss_family == AF_NETLINK &&
                ((struct sockaddr_nl *)&from)->nl_pid != 0) {
                r->malformed++;
                continue;
            }
            take_datagram(r, buf, (size_t)n, b, &reads);
        }
        pending_end(&r->pending, b->drained); /* drained: a fork that could undo a read was taken */
        queue_batch(r, b);
        if (fatal) break;
    }
    free(buf);
out:
    pthread_mutex_lock(&r->lock);
    r->stopped = 1;
    r->stop = 1;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* --- the Python type ------------------------------------------------ */

static PyObject *raw_event_type; /* proctop.kernel.protocol.RawEvent */

/* creader.wire_table(): ((what, size, pid, tgid, ppid, ptgid, a, b, comm, names), ...) into r->wire */
static int set_wire(CReader *self, PyObject *table) {
    PyObject *rows = PySequence_Fast(table, "wire must be a sequence of layouts");
    if (!rows) return -1;
    memset(self->wire, 0, sizeof self->wire);
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(rows); i++) {
        unsigned int what;
        long size;
        int o[W_FIELDS], names;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(rows, i), "Iliiiiiiii;a layout is 10 integers", &what, &size,
                              &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &names)) {
            Py_DECREF(rows);
            return -1;
        }
        int bad = !what || (what & (what - 1)) || size <= 0 || size > 64 || names < 0 || names > 2 || (names && size > 24);
        for (int f = 0; f < W_FIELDS && !bad; f++)
            bad = o[f] < -1 || (o[f] >= 0 && o[f] + (f == W_COMM ? 16 : 4) > size);
        if (bad) {
            Py_DECREF(rows);
            PyErr_Format(PyExc_ValueError, "layout of what 0x%x does not fit event_data", what);
            return -1;
        }
        Wire *w = &self->wire[__builtin_ctz(what)];
        w->size = size;
        memcpy(w->off, o, sizeof o);
        w->names = names;
    }
    Py_DECREF(rows);
    return 0;
}

static int CReader_init(CReader *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"fd", "idx", "mask", "names_bits", "threads", "queue_max", "wire", "all_mask", NULL};
    int fd, threads;
    unsigned int idx, mask, names_bits, all_mask;
    long long queue_max;
    PyObject *wire;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iIIIpLOI", names, &fd, &idx, &mask, &names_bits, &threads,
                                     &queue_max, &wire, &all_mask))
        return -1;
    if (self->started) {
        PyErr_SetString(PyExc_RuntimeError, "CReader already started");
        return -1;
    }
    if (set_wire(self, wire) < 0) return -1;
    self->all_mask = all_mask;
    self->fd = fd;
    self->idx = idx;
    self->mask = mask;
    self->names_bits = names_bits;
    self->threads = threads;
    self->queue_max = queue_max;
    return 0;
}

static PyObject *CReader_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    CReader *self = (CReader *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    pthread_mutex_init(&self->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&self->cond, &attr);
    pthread_condattr_destroy(&attr);
    self->fd = -1;
    self->announced.slots = calloc(SLOTS, sizeof(Slot));
    self->announced.ring = calloc(RING, sizeof(RingEntry));
    self->announced.spare = calloc(RING, sizeof(RingEntry));
    self->pending.slots = calloc(PENDING_SLOTS, sizeof(PendingSlot));
    if (!self->announced.slots || !self->announced.ring || !self->announced.spare || !self->pending.slots) {
        free(self->announced.slots);
        free(self->announced.ring);
        free(self->announced.spare);
        free(self->pending.slots);
        self->announced.slots = NULL;
        self->announced.ring = NULL;
        self->announced.spare = NULL;
        self->pending.slots = NULL;
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void join_thread(CReader *self) {
    if (!self->started) return;
    self->stop = 1;
    Py_BEGIN_ALLOW_THREADS
    pthread_join(self->thread, NULL);
    Py_END_ALLOW_THREADS
    self->started = 0;
}

static void CReader_dealloc(CReader *self) {
    join_thread(self);
    Batch *b = self->qhead;
    while (b) { Batch *next = b->next; batch_free(b); b = next; }
    if (self->announced.slots) ann_clear(&self->announced);
    if (self->pending.slots) pending_end(&self->pending, 1);
    free(self->pending.reads);
    free(self->pending.slots);
    free(self->announced.slots);
    free(self->announced.ring);
    free(self->announced.spare);
    pthread_mutex_destroy(&self->lock);
    pthread_cond_destroy(&self->cond);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *CReader_start(CReader *self, PyObject *unused) {
    if (self->started || self->stopped) {
        PyErr_SetString(PyExc_RuntimeError, "CReader starts once");
        return NULL;
    }
    int err = pthread_create(&self->thread, NULL, read_loop, self);
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    self->started = 1;
    Py_RETURN_NONE;
}

static PyObject *CReader_stop(CReader *self, PyObject *unused) {
    join_thread(self);
    self->stopped = 1;
    pthread_mutex_lock(&self->lock);
    pthread_cond_broadcast(&self->cond);
    pthread_mutex_unlock(&self->lock);
    Py_RETURN_NONE;
}

static PyObject *CReader_set_filter(CReader *self, PyObject *args) {
    unsigned int mask, names_bits;
    if (!PyArg_ParseTuple(args, "II", &mask, &names_bits)) return NULL;
    self->names_bits = names_bits;
    self->mask = mask;
    Py_RETURN_NONE;
}

static PyObject *bytes_or_none(const Bytes *b) {
    if (!b->data) Py_RETURN_NONE;
    return PyBytes_FromStringAndSize(b->data, (Py_ssize_t)b->len);
}

static PyObject *reads_to_python(const Reads *r) {
    if (!r) Py_RETURN_NONE;
    PyObject *cmd = bytes_or_none(&r->cmdline), *exe = bytes_or_none(&r->exe);
    PyObject *stat = bytes_or_none(&r->stat), *cg = bytes_or_none(&r->cgroup);
    PyObject *uid = r->uid_ok ? PyLong_FromUnsignedLong(r->uid) : (Py_INCREF(Py_None), Py_None);
    PyObject *end = PyLong_FromLongLong(r->end_ns), *argv_end = PyLong_FromLongLong(r->argv_end_ns);
    PyObject *out = (end && argv_end && cmd && exe && stat && cg && uid)
                        ? PyTuple_Pack(7, end, cmd, exe, stat, uid, cg, argv_end)
                        : NULL;
    Py_XDECREF(end);
    Py_XDECREF(argv_end);
    Py_XDECREF(cmd); Py_XDECREF(exe); Py_XDECREF(stat); Py_XDECREF(cg); Py_XDECREF(uid);
    return out;
}

static PyObject *int_or_none(int64_t v) {
    if (v < 0) Py_RETURN_NONE;
    return PyLong_FromLongLong(v);
}

/* (RawEvent, reads | None, unsaid) for an event; (pid, start_ns, ppid, reads | None, own, uid, cgroup) for
 * an introduction (reads None when nameless or unsaid); None for an overrun */
static PyObject *item_to_python(const Item *it) {
    if (it->kind == IT_LOST) Py_RETURN_NONE;
    if (it->kind == IT_INTRO) {
        const Reads *names = it->reads && !it->reads->unsaid ? it->reads : NULL;
        const Reads *cg = it->cg && !it->cg->unsaid ? it->cg : NULL;
        PyObject *cgroup = cg ? bytes_or_none(&cg->cgroup) : (Py_INCREF(Py_None), Py_None);
        return Py_BuildValue("(kKNNONN)", (unsigned long)it->pid, (unsigned long long)it->ts, int_or_none(it->ippid),
                             reads_to_python(names), it->own ? Py_True : Py_False, int_or_none(it->iuid), cgroup);
    }
    PyObject *ev = PyObject_CallFunction(
        raw_event_type, "kkKkkkkkky#ky#", (unsigned long)it->what, (unsigned long)it->cpu,
        (unsigned long long)it->ts, (unsigned long)it->pid, (unsigned long)it->tgid, (unsigned long)it->ppid,
        (unsigned long)it->ptgid, (unsigned long)it->a, (unsigned long)it->b, it->comm, (Py_ssize_t)it->comm_len,
        (unsigned long)it->seq, it->argv.data ? it->argv.data : "", (Py_ssize_t)(it->argv.data ? it->argv.len : 0));
    if (!ev) return NULL;
    PyObject *reads = reads_to_python(it->reads);
    if (!reads) { Py_DECREF(ev); return NULL; }
    return Py_BuildValue("(NNO)", ev, reads, it->reads && it->reads->unsaid ? Py_True : Py_False);
}

/* take_raw(timeout, most): whole batches, oldest first, until `most` items; waits up to timeout for the first.
 * Each batch is (items, dropped); an item is what item_to_python makes. */
static PyObject *CReader_take_raw(CReader *self, PyObject *args) {
    double timeout;
    Py_ssize_t most;
    if (!PyArg_ParseTuple(args, "dn", &timeout, &most)) return NULL;
    Batch *got = NULL, *gtail = NULL;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->lock);
    if (!self->qhead && !self->stopped && timeout > 0) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        long long ns = until.tv_nsec + (long long)(timeout * 1e9);
        until.tv_sec += ns / 1000000000LL;
        until.tv_nsec = ns % 1000000000LL;
        while (!self->qhead && !self->stopped) {
            if (pthread_cond_timedwait(&self->cond, &self->lock, &until) == ETIMEDOUT) break;
        }
    }
    /* Linger: a few events are left to gather for up to LINGER_NS after the oldest was queued, so a
     * storm is taken in batches of hundreds, not of the two or three each drain of the socket makes
     * (each take is a turn of Python, a JSON write and a wake-up of the writer thread). The reads
     * are done by then: only the showing waits. */
    if (self->qhead && timeout > 0 && self->held < LINGER_ITEMS && self->held < most) {
        int64_t until_ns = self->qhead->queued_ns + LINGER_NS;
        struct timespec until = {until_ns / 1000000000LL, until_ns % 1000000000LL};
        while (!self->stopped && self->held < LINGER_ITEMS && self->held < most && now_ns() < until_ns) {
            if (pthread_cond_timedwait(&self->cond, &self->lock, &until) == ETIMEDOUT) break;
        }
    }
    Py_ssize_t count = 0;
    while (self->qhead && (count == 0 || count < most)) {
        Batch *b = self->qhead;
        self->qhead = b->next;
        if (!self->qhead) self->qtail = NULL;
        b->next = NULL;
        if (gtail) gtail->next = b; else got = b;
        gtail = b;
        count += (Py_ssize_t)b->n + 1;
        self->held -= (long long)b->n;
    }
    pthread_mutex_unlock(&self->lock);
    Py_END_ALLOW_THREADS
    PyObject *out = PyList_New(0);
    Batch *b = got;
    while (b) {
        if (out) {
            PyObject *items = PyList_New((Py_ssize_t)b->n);
            Py_ssize_t i = 0;
            for (Item *it = b->head; items && it; it = it->next, i++) {
                PyObject *x = item_to_python(it);
                if (!x) { Py_CLEAR(items); break; }
                PyList_SET_ITEM(items, i, x);
            }
            PyObject *tup = items ? Py_BuildValue("(NL)", items, b->dropped) : NULL;
            if (!tup || PyList_Append(out, tup) < 0) Py_CLEAR(out);
            Py_XDECREF(tup);
        }
        Batch *next = b->next;
        batch_free(b);
        b = next;
    }
    return out;
}

static PyObject *CReader_counters(CReader *self, PyObject *unused) {
    return Py_BuildValue("{sLsLsLsLsLsLsLsL}", "received", self->received, "filtered", self->filtered, "names_only",
                         self->names_only, "malformed", self->malformed, "acks", self->acks, "errors", self->errors,
                         "other", self->other, "lost", self->lost);
}

static PyObject *CReader_get_error(CReader *self, void *closure) {
    if (!self->stopped || !self->error[0]) Py_RETURN_NONE;
    return PyUnicode_DecodeLocale(self->error, "surrogateescape");
}

static PyObject *CReader_get_stopped(CReader *self, void *closure) { return PyBool_FromLong(self->stopped); }

static PyObject *CReader_get_empty(CReader *self, void *closure) {
    pthread_mutex_lock(&self->lock);
    int empty = self->qhead == NULL;
    pthread_mutex_unlock(&self->lock);
    return PyBool_FromLong(empty);
}

static PyMethodDef CReader_methods[] = {
    {"start", (PyCFunction)CReader_start, METH_NOARGS, "Start the reader thread."},
    {"stop", (PyCFunction)CReader_stop, METH_NOARGS, "Stop the reader thread (within 0.25 s) and wait for it."},
    {"set_filter", (PyCFunction)CReader_set_filter, METH_VARARGS, "set_filter(mask, names_bits)"},
    {"take_raw", (PyCFunction)CReader_take_raw, METH_VARARGS, "take_raw(timeout, most) -> list of batches"},
    {"counters", (PyCFunction)CReader_counters, METH_NOARGS, "The thread's counters as a dict."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef CReader_getset[] = {
    {"error", (getter)CReader_get_error, NULL, "why reading failed for good, or None", NULL},
    {"stopped", (getter)CReader_get_stopped, NULL, "the thread has ended (or was never to run)", NULL},
    {"empty", (getter)CReader_get_empty, NULL, "nothing is queued", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "proctop.sources._creader.CReader",
    .tp_basicsize = sizeof(CReader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The compiled socket reader thread (see proctop.sources.creader).",
    .tp_new = CReader_new,
    .tp_init = (initproc)CReader_init,
    .tp_dealloc = (destructor)CReader_dealloc,
    .tp_methods = CReader_methods,
    .tp_getset = CReader_getset,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_creader", "The compiled socket reader.", -1, NULL};

PyMODINIT_FUNC PyInit__creader(void) {
    if (PyType_Ready(&CReaderType) < 0) return NULL;
    PyObject *protocol = PyImport_ImportModule("proctop.kernel.protocol");
    if (!protocol) return NULL;
    raw_event_type = PyObject_GetAttrString(protocol, "RawEvent");
    Py_DECREF(protocol);
    if (!raw_event_type) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&CReaderType);
    if (PyModule_AddObject(m, "CReader", (PyObject *)&CReaderType) < 0) {
        Py_DECREF(&CReaderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
