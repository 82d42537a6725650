// SPDX-License-Identifier: GPL-2.0
/*
 * mmstress - fork, mremap, munmap, mprotect and MADV_DONTNEED parts of THPs
 * in parallel for a bounded time, with periodic rmap audits.
 *
 *	mmstress [-p procs] [-t seconds] [-i interval] [-L n] [-s seed] [-K]
 *
 * Defaults: 4 worker processes, 60 s of work (time the workers are paused
 * for audits does not count), an audit every 5 s of it (a live one too in
 * every -L'th round that is on time, every such round by default; 0: none),
 * a seed from the clock (printed, so a run can be repeated with -s).  Unless
 * -K is given, THP "enabled" is raised from never to madvise and
 * "shmem_enabled" from never or deny to advise, and both are put back at the
 * end.
 *
 * Output (stdout) is TAP 13 as harness/ktap.py reads it: the plan first,
 * then one test per audit round, one for the workers, one for an audit
 * after every worker has exited, and a summary comment
 * "# ops=... forks=... mremaps=... audits=... mismatches=...".  The exit
 * status is 0 only if every test passed (a skipped audit counts as passed).
 *
 * Workers
 *
 * Each worker process keeps MAX_AREAS areas of 4-8 MiB, 2 MiB aligned and
 * MADV_HUGEPAGE: private anonymous ones and MAP_SHARED anonymous (shmem)
 * ones.  Until it is told to stop it picks operations with a seeded PRNG:
 * touch a range, munmap part of a THP, mprotect part of one to PROT_READ
 * (and back), MADV_DONTNEED part, mremap part to a PMD-aligned or
 * misaligned place (MREMAP_MAYMOVE | MREMAP_FIXED) and back, map a hole
 * again, MADV_COLLAPSE a 2 MiB range, replace an area, fork a child that
 * runs a few operations on its copy and exits (the parent waits), and
 * spawn a long-lived child that runs operations in parallel with its
 * parent until it retires.
 *
 * Every process keeps a model of its areas: for each page whether it is
 * mapped, private or shared, read-only, which mapping call made it (pages of
 * one call and one protection form one VMA; after a fork each VMA is a call
 * of its own, as the child's VMAs get anon_vmas of their own and never merge
 * again), and the 64-bit stamp its first word must hold.  Areas and the
 * mremap scratch space sit at fixed places of an arena far from
 * mmap(NULL)'s, so an unmapped page stays a hole.  Each operation checks the
 * syscall's result against the errno the model predicts, and every page a
 * touch reaches is read and compared with its stamp before a private
 * writable page gets a new one.  Shared pages are written only when their
 * area is made, so a parent and its children agree on their content whatever
 * each of them does to its own mapping.  An unexpected errno or a wrong stamp
 * is reported on stdout ("# ..."), counted, and ends that process's work
 * (its model can no longer be trusted).
 *
 * Audits
 *
 * /sys/kernel/debug/folio_mapcount/audit (CONFIG_FOLIO_MAPCOUNT_DEBUG):
 * write "all", read back "checked=<n> mismatches=<m> skipped=<s>
 * tuples=<t>"; mismatching folios are logged by the kernel.  The kernel
 * documents that an exact audit needs the mapping processes stopped: zaps
 * take neither the folio lock nor the rmap locks, so an unmap racing the
 * rmap walk can make a correct folio look wrong.  So a round audits twice:
 * first while every process keeps going (the "live" audit: reported, its
 * kernel log lines shown, not judged; only in a round that is on time, as
 * it competes with the workers for the CPUs), then with every process
 * paused between two operations (judged: any mismatch fails the round, and
 * the kernel's "folio_mapcount audit:" lines are copied from /dev/kmsg).
 *
 * Pausing is cooperative.  Each process owns a slot in a shared page and
 * sets slot->busy around every operation; the monitor (the process started)
 * sets sh->pause and waits for every busy flag to clear.  A child that a
 * fork operation makes and waits for lives inside its parent's operation,
 * and a long-lived child is only ever killed and reaped inside one of its
 * parent's operations, so no mm is torn down behind a judged audit.
 * Without the audit file (an unpatched kernel) the rounds still pause the
 * workers and report their figures, with "# SKIP".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE		25
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE	0x100000
#endif
#ifndef PR_SET_CHILD_SUBREAPER
#define PR_SET_CHILD_SUBREAPER	36
#endif

#define PG			4096UL
#define HP			512UL		/* pages per PMD-sized THP */
#define HPAGE			(HP * PG)
#define MAX_AREAS		3		/* areas per process */
/*
 * Every process maps its areas and its mremap scratch space at fixed
 * places of its own arena, far from where mmap(NULL) puts things: an
 * unmapped page of an area stays a hole, never reused behind the model.
 */
#define ARENA			0x100000000000UL
#define AREA_SPAN		(32UL << 20)	/* per area, which is 4-8 MiB */
#define SCRATCH			(ARENA + MAX_AREAS * AREA_SPAN)
#define MAX_SLOTS		64		/* processes taking part at once */
#define MAX_KIDS		2		/* long-lived children per worker */
#define MAX_WORKERS		32
#define MAX_REPORTS		40		/* problem lines printed, in all */
#define MAX_KMSG		8		/* kernel lines copied per audit */
#define FORK_OPS		8		/* operations of a fork child, at most */
#define KID_OPS			200		/* of a long-lived child, at most */
#define PAUSE_TIMEOUT		60.0		/* s for every process to pause */
#define STOP_TIMEOUT		60.0		/* s for the workers to exit */

#define AUDIT_PATH		"/sys/kernel/debug/folio_mapcount/audit"
#define RMAP_STATS_PATH		"/sys/kernel/debug/folio_mapcount/rmap_stats"
#define THP_ENABLED		"/sys/kernel/mm/transparent_hugepage/enabled"
#define THP_SHMEM		"/sys/kernel/mm/transparent_hugepage/shmem_enabled"

/* ------------------------------------------------------------------ */
/* Shared state: counters and the pause protocol                       */
/* ------------------------------------------------------------------ */

enum counter {
	C_OPS, C_TOUCHES, C_PAGES, C_FORKS, C_SPAWNS, C_MREMAPS, C_MUNMAPS,
	C_MPROTECTS, C_DONTNEEDS, C_COLLAPSES, C_FILLS, C_AREAS, C_ERRORS,
	C_CORRUPT, NR_COUNTERS
};

static const char *const counter_name[NR_COUNTERS] = {
	"ops", "touches", "pages", "forks", "spawns", "mremaps", "munmaps",
	"mprotects", "dontneeds", "collapses", "fills", "areas", "errors",
	"corrupt",
};

struct slot {
	atomic_int pid;		/* 0: free; -1: taken, the child not yet up */
	atomic_int busy;	/* inside an operation */
	atomic_int quit;	/* its parent wants it to retire */
	atomic_int retired;	/* done: waits for its parent to kill it */
};

struct shared {
	atomic_int pause;	/* the monitor wants every process idle */
	atomic_int stop;	/* the run is over */
	atomic_int reports;	/* problem lines printed so far */
	atomic_ulong count[NR_COUNTERS];
	struct slot slot[MAX_SLOTS];
};

static struct shared *sh;

/* ------------------------------------------------------------------ */
/* This process                                                        */
/* ------------------------------------------------------------------ */

enum kind { K_NONE, K_PRIV, K_SHARED };

struct pst {
	uint64_t stamp;		/* expected first word; 0 for a zero page */
	uint32_t seg;		/* the mapping call that made it */
	uint8_t kind;
	uint8_t ro;
};

struct area {
	char *base;
	size_t npages;		/* 0: unused */
	struct pst *pg;
};

struct kid {
	pid_t pid;
	int slot;
};

enum depth { D_WORKER, D_KID, D_FORK };

static struct {
	pid_t pid;
	pid_t ppid;		/* its parent: gone means give up */
	int index;		/* worker number */
	int slot;
	enum depth depth;
	long ops_left;		/* D_KID: operations before it retires */
	int failed;
	uint64_t rng;
	uint32_t seg;
	uint32_t stamps;
	unsigned long pages;	/* pages checked, not yet counted */
	struct area area[MAX_AREAS];
	struct kid kid[MAX_KIDS];
	int nkids;
} me;

static int have_thp;

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void write_full(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len) {
		n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		buf += n;
		len -= (size_t)n;
	}
}

/* One whole line per write(2): several processes share stdout. */
static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(buf)) {
		n = sizeof(buf) - 1;
		buf[n - 1] = '\n';
	}
	write_full(1, buf, (size_t)n);
}

static const char *ename(int err)
{
	const char *name;

	if (!err)
		return "success";
	name = strerrorname_np(err);
	return name ? name : "E?";
}

static void count(enum counter c, unsigned long n)
{
	atomic_fetch_add_explicit(&sh->count[c], n, memory_order_relaxed);
}

static unsigned long counted(enum counter c)
{
	return atomic_load(&sh->count[c]);
}

/* "ops=1 touches=2 ..." for every counter. */
static void fmt_counts(char *buf, size_t size)
{
	size_t len = 0;
	int i, n;

	buf[0] = '\0';
	for (i = 0; i < NR_COUNTERS; i++) {
		n = snprintf(buf + len, size - len, "%s%s=%lu", i ? " " : "", counter_name[i],
			     counted((enum counter)i));
		if (n < 0 || (size_t)n >= size - len)
			break;
		len += (size_t)n;
	}
}

static const char *role(void)
{
	static const char *const names[] = { "worker", "child", "fork child" };

	return names[me.depth];
}

/* A problem: counted, printed (the first MAX_REPORTS), and this process stops. */
static void report(enum counter c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(enum counter c, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	me.failed = 1;
	count(C_ERRORS, 1);
	if (c != C_ERRORS)
		count(c, 1);
	if (atomic_fetch_add(&sh->reports, 1) >= MAX_REPORTS)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	out("# %s %d (pid %d): %s\n", role(), me.index, me.pid, msg);
}

/* The result of a syscall (0 or errno) against what the model expects. */
static int expect(const char *what, int got, int want, int also)
{
	if (got == want || (also >= 0 && got == also))
		return 1;
	report(C_ERRORS, "%s: %s, expected %s%s%s", what, ename(got),
	       ename(want), also >= 0 ? " or " : "",
	       also >= 0 ? ename(also) : "");
	return 0;
}

static void describe_status(int st, char *buf, size_t size)
{
	if (WIFEXITED(st))
		snprintf(buf, size, "exit status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, size, "killed by SIG%s", sigabbrev_np(WTERMSIG(st)) ?
			 sigabbrev_np(WTERMSIG(st)) : "?");
	else
		snprintf(buf, size, "status %#x", st);
}

static pid_t wait_for(pid_t pid, int *st, int flags)
{
	pid_t r;

	do
		r = waitpid(pid, st, flags);
	while (r < 0 && errno == EINTR);
	return r;
}

/* ------------------------------------------------------------------ */
/* PRNG: xorshift64*, children reseeded through splitmix64             */
/* ------------------------------------------------------------------ */

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x ? x : 1;
}

static uint64_t rnd(void)
{
	uint64_t x = me.rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	me.rng = x;
	return x * 0x2545f4914f6cdd1dULL;
}

static size_t below(size_t n)
{
	return n ? (size_t)(rnd() % n) : 0;
}

/* ------------------------------------------------------------------ */
/* Pausing                                                             */
/* ------------------------------------------------------------------ */

static int slot_alloc(void)
{
	int i, free_pid;

	for (i = 0; i < MAX_SLOTS; i++) {
		free_pid = 0;
		if (atomic_compare_exchange_strong(&sh->slot[i].pid, &free_pid, -1)) {
			atomic_store(&sh->slot[i].retired, 0);
			atomic_store(&sh->slot[i].quit, 0);
			/* Born busy: it is set up inside its parent's operation. */
			atomic_store(&sh->slot[i].busy, 1);
			return i;
		}
	}
	return -1;
}

static void slot_free(int i)
{
	atomic_store(&sh->slot[i].busy, 0);
	atomic_store(&sh->slot[i].retired, 0);
	atomic_store(&sh->slot[i].quit, 0);
	atomic_store(&sh->slot[i].pid, 0);
}

static void end_op(void)
{
	if (me.pages) {
		count(C_PAGES, me.pages);
		me.pages = 0;
	}
	atomic_store(&sh->slot[me.slot].busy, 0);
}

enum reap { REAP_DEAD, REAP_RETIRED };

/*
 * Reap long-lived children.  REAP_DEAD only collects children that died
 * (safe while idle).  A retired child is between operations, so it has no
 * fork child of its own; killing it tears its mm down, so REAP_RETIRED
 * runs only inside an operation.
 */
static void reap_kids(enum reap how)
{
	char why[64];
	int k = 0, st, killed;
	pid_t r;

	while (k < me.nkids) {
		struct kid *c = &me.kid[k];

		killed = how == REAP_RETIRED && atomic_load(&sh->slot[c->slot].retired);
		if (killed)
			kill(c->pid, SIGKILL);
		r = wait_for(c->pid, &st, killed ? 0 : WNOHANG);
		if (r == 0) {
			k++;
			continue;
		}
		if (r < 0) {
			report(C_ERRORS, "waitpid(child %d): %s", c->pid, ename(errno));
		} else if (!killed || !WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
			describe_status(st, why, sizeof(why));
			report(C_ERRORS, "child %d died: %s", c->pid, why);
		}
		slot_free(c->slot);
		me.kid[k] = me.kid[--me.nkids];
	}
}

/* Wait while the monitor audits, then mark this process busy. */
static void begin_op(void)
{
	struct slot *s = &sh->slot[me.slot];

	for (;;) {
		atomic_store(&s->busy, 1);
		if (!atomic_load(&sh->pause))
			return;
		atomic_store(&s->busy, 0);
		while (atomic_load(&sh->pause)) {
			reap_kids(REAP_DEAD);
			usleep(1000);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Areas and their model                                               */
/* ------------------------------------------------------------------ */

static char *page_addr(const struct area *a, size_t i)
{
	return a->base + i * PG;
}

static uint64_t new_stamp(void)
{
	return ((uint64_t)(uint32_t)me.pid << 32) | ++me.stamps;
}

static const char *kind_name(int kind)
{
	return kind == K_PRIV ? "private" : kind == K_SHARED ? "shared" : "unmapped";
}

/* Page i of area a, mapped at addr now: its first word against the model. */
static int check_page(const struct area *a, size_t i, const char *addr)
{
	const struct pst *p = &a->pg[i];
	uint64_t v = *(const volatile uint64_t *)addr;

	me.pages++;
	if (v == p->stamp)
		return 0;
	report(C_CORRUPT, "page %zu of area %p (%s%s, seg %u) at %p: first word %#" PRIx64 ", expected %#" PRIx64,
	       i, (void *)a->base, kind_name(p->kind), p->ro ? ", read-only" : "",
	       p->seg, (const void *)addr, v, p->stamp);
	return -1;
}

/*
 * Check pages [first, first + n) of a, mapped from `at` on, and give each
 * private writable one a new stamp.
 */
static void touch_at(struct area *a, size_t first, size_t n, char *at)
{
	size_t i;

	for (i = first; i < first + n && !me.failed; i++) {
		struct pst *p = &a->pg[i];
		char *addr = at + (i - first) * PG;

		if (p->kind == K_NONE)
			continue;
		if (check_page(a, i, addr))
			return;
		if (p->kind == K_PRIV && !p->ro) {
			p->stamp = new_stamp();
			*(volatile uint64_t *)addr = p->stamp;
		}
	}
	count(C_TOUCHES, 1);
}

static void touch(struct area *a, size_t first, size_t n)
{
	touch_at(a, first, n, page_addr(a, first));
}

struct rinfo {
	size_t holes;
	int one_vma;		/* one mapping call, one protection: one VMA */
	int any_ro;
};

static struct rinfo range_info(const struct area *a, size_t first, size_t n)
{
	struct rinfo r = { 0, 1, 0 };
	const struct pst *p0 = NULL;
	size_t i;

	for (i = first; i < first + n; i++) {
		const struct pst *p = &a->pg[i];

		if (p->kind == K_NONE) {
			r.holes++;
			continue;
		}
		r.any_ro |= p->ro;
		if (!p0)
			p0 = p;
		else if (p->seg != p0->seg || p->ro != p0->ro)
			r.one_vma = 0;
	}
	if (r.holes)
		r.one_vma = 0;
	return r;
}

/*
 * A range of pages, mostly inside one THP-sized block: a whole block, one
 * straddling two blocks, the middle 64 KiB, or 1-512 pages anywhere.
 */
static void pick_range(const struct area *a, size_t *first, size_t *n)
{
	size_t blocks = a->npages / HP, c = below(blocks), len, before;

	switch (below(8)) {
	case 0:
		*first = c * HP;
		*n = HP;
		return;
	case 1:
		if (c + 1 < blocks) {
			before = 1 + below(HP - 1);
			*first = (c + 1) * HP - before;
			*n = before + 1 + below(HP - 1);
			return;
		}
		break;
	case 2:
		*first = c * HP + HP / 2 - 8;
		*n = 16;
		return;
	}
	len = (size_t)1 << below(10);
	*first = c * HP + below(HP - len + 1);
	*n = len;
}

static void model_map(struct area *a, size_t first, size_t n, int kind, uint32_t seg)
{
	size_t i;

	for (i = first; i < first + n; i++)
		a->pg[i] = (struct pst){ .stamp = 0, .seg = seg, .kind = (uint8_t)kind };
}

/*
 * Just forked: each VMA got its own anon_vma (anon_vma_fork), so VMAs that
 * are separate now can never merge again in this process, whatever their
 * protections become.  Give each run of one segment and one protection (one
 * VMA) a segment of its own.
 */
static void model_forked(void)
{
	uint32_t seg = 0, old = 0;
	int j, ro = 0, mapped;
	size_t i;

	for (j = 0; j < MAX_AREAS; j++) {
		struct area *a = &me.area[j];

		for (i = 0, mapped = 0; i < a->npages; i++) {
			struct pst *p = &a->pg[i];

			if (p->kind == K_NONE) {
				mapped = 0;
				continue;
			}
			if (!mapped || p->seg != old || p->ro != ro)
				seg = ++me.seg;
			mapped = 1;
			old = p->seg;
			ro = p->ro;
			p->seg = seg;
		}
	}
}

static int madvise_huge(char *addr, size_t len)
{
	char what[96];

	snprintf(what, sizeof(what), "madvise(%p, %#zx, MADV_HUGEPAGE)", (void *)addr, len);
	return expect(what, madvise(addr, len, MADV_HUGEPAGE) ? errno : 0,
		      0, have_thp ? -1 : EINVAL);
}

/*
 * A new area of npages at the start of its arena span (2 MiB aligned, so a
 * shared one has file offset 0 at an aligned address); every page written.
 */
static int area_create(struct area *a, int kind, size_t npages)
{
	size_t len = npages * PG, i;
	int flags = (kind == K_SHARED ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS |
		    MAP_FIXED_NOREPLACE;
	char what[128], *base = (char *)(ARENA + (uintptr_t)(a - me.area) * AREA_SPAN);
	void *m;

	m = mmap(base, len, PROT_READ | PROT_WRITE, flags, -1, 0);
	snprintf(what, sizeof(what), "mmap(%p, %#zx, %s|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE)",
		 (void *)base, len, kind == K_SHARED ? "MAP_SHARED" : "MAP_PRIVATE");
	if (!expect(what, m == MAP_FAILED ? errno : 0, 0, -1))
		return -1;
	if (m != base) {
		report(C_ERRORS, "%s: mapped at %p", what, m);
		return -1;
	}
	if (!madvise_huge(base, len))
		return -1;
	a->pg = calloc(npages, sizeof(*a->pg));
	if (!a->pg) {
		report(C_ERRORS, "out of memory for the model");
		return -1;
	}
	a->base = base;
	a->npages = npages;
	model_map(a, 0, npages, kind, ++me.seg);
	for (i = 0; i < npages; i++) {
		a->pg[i].stamp = new_stamp();
		*(volatile uint64_t *)page_addr(a, i) = a->pg[i].stamp;
	}
	count(C_AREAS, 1);
	return 0;
}

static void area_destroy(struct area *a)
{
	char what[96];

	snprintf(what, sizeof(what), "munmap(%p, %#zx)", (void *)a->base, a->npages * PG);
	expect(what, munmap(a->base, a->npages * PG) ? errno : 0, 0, -1);
	free(a->pg);
	memset(a, 0, sizeof(*a));
}

static int new_area(struct area *a)
{
	int kind = below(3) ? K_PRIV : K_SHARED;

	return area_create(a, kind, (2 + below(3)) * HP);
}

/* ------------------------------------------------------------------ */
/* Operations                                                          */
/* ------------------------------------------------------------------ */

static void op_touch(struct area *a)
{
	size_t first, n;

	pick_range(a, &first, &n);
	touch(a, first, n);
}

static void op_munmap(struct area *a)
{
	size_t first, n;
	char what[96];

	pick_range(a, &first, &n);
	snprintf(what, sizeof(what), "munmap(%p, %#zx)", (void *)page_addr(a, first), n * PG);
	if (expect(what, munmap(page_addr(a, first), n * PG) ? errno : 0, 0, -1))
		model_map(a, first, n, K_NONE, 0);
	count(C_MUNMAPS, 1);
}

/* PROT_READ, or back to read-write if any page of the range is read-only. */
static void op_mprotect(struct area *a)
{
	size_t first, n, i;
	struct rinfo r;
	char what[96];
	int prot;

	pick_range(a, &first, &n);
	r = range_info(a, first, n);
	if (r.holes) {		/* ENOMEM, but the mapped part would change */
		touch(a, first, n);
		return;
	}
	prot = r.any_ro ? PROT_READ | PROT_WRITE : PROT_READ;
	snprintf(what, sizeof(what), "mprotect(%p, %#zx, %s)", (void *)page_addr(a, first),
		 n * PG, r.any_ro ? "PROT_READ|PROT_WRITE" : "PROT_READ");
	count(C_MPROTECTS, 1);
	if (!expect(what, mprotect(page_addr(a, first), n * PG, prot) ? errno : 0, 0, -1))
		return;
	for (i = first; i < first + n; i++)
		a->pg[i].ro = !r.any_ro;
	touch(a, first, n);
}

/* Holes make it ENOMEM, after the mapped parts were zapped all the same. */
static void op_dontneed(struct area *a)
{
	size_t first, n, i;
	struct rinfo r;
	char what[96];
	int got;

	pick_range(a, &first, &n);
	r = range_info(a, first, n);
	snprintf(what, sizeof(what), "madvise(%p, %#zx, MADV_DONTNEED)",
		 (void *)page_addr(a, first), n * PG);
	count(C_DONTNEEDS, 1);
	got = madvise(page_addr(a, first), n * PG, MADV_DONTNEED) ? errno : 0;
	if (!expect(what, got, r.holes ? ENOMEM : 0, -1))
		return;
	for (i = first; i < first + n; i++)
		if (a->pg[i].kind == K_PRIV)
			a->pg[i].stamp = 0;
	if (below(2))
		touch(a, first, n);
}

/*
 * Move part of an area to a PMD-aligned or misaligned place in the scratch
 * space, check and write it there, and move it back.  A range that is one VMA must
 * move; one with holes or several VMAs may be refused with EFAULT (6.1
 * moves one VMA at a time; later kernels move several).
 */
static void op_mremap(struct area *a)
{
	size_t first, n, len, mis, i;
	uint32_t old_seg[4], new_seg[4];
	int nsegs = 0, j, got;
	char what[160], *src, *dst;
	struct rinfo info;
	void *m;

	pick_range(a, &first, &n);
	info = range_info(a, first, n);
	src = page_addr(a, first);
	len = n * PG;
	mis = below(4) ? below(HP) : 0;
	dst = (char *)SCRATCH + mis * PG;
	count(C_MREMAPS, 1);
	snprintf(what, sizeof(what), "mremap(%p, %#zx, MREMAP_MAYMOVE|MREMAP_FIXED, %p)",
		 (void *)src, len, (void *)dst);
	m = mremap(src, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	got = m == MAP_FAILED ? errno : 0;
	if (!expect(what, got, info.one_vma ? 0 : EFAULT, info.one_vma ? -1 : 0) || got)
		return;
	touch_at(a, first, n, dst);
	snprintf(what, sizeof(what), "mremap(%p, %#zx, MREMAP_MAYMOVE|MREMAP_FIXED, %p) back",
		 (void *)dst, len, (void *)src);
	m = mremap(dst, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, src);
	if (!expect(what, m == MAP_FAILED ? errno : 0, 0, -1))
		return;
	/* Moved pages are a new VMA, which may or may not merge with its neighbours. */
	for (i = first; i < first + n; i++) {
		struct pst *p = &a->pg[i];

		if (p->kind == K_NONE)
			continue;
		for (j = 0; j < nsegs && old_seg[j] != p->seg; j++)
			;
		if (j == nsegs) {
			if (nsegs == 4) {
				p->seg = ++me.seg;
				continue;
			}
			old_seg[nsegs] = p->seg;
			new_seg[nsegs++] = ++me.seg;
		}
		p->seg = new_seg[j];
	}
}

/* Map a run of unmapped pages again (private, MADV_HUGEPAGE). */
static void op_fill(struct area *a)
{
	size_t start = below(a->npages), i, first, n = 0;
	char what[96];
	void *m;

	for (i = 0; i < a->npages; i++)
		if (a->pg[(start + i) % a->npages].kind == K_NONE)
			break;
	if (i == a->npages) {
		op_touch(a);
		return;
	}
	first = (start + i) % a->npages;
	while (first > 0 && a->pg[first - 1].kind == K_NONE && n < HP) {
		first--;
		n++;
	}
	for (n = 0; first + n < a->npages && a->pg[first + n].kind == K_NONE; n++)
		;
	snprintf(what, sizeof(what), "mmap(%p, %#zx, MAP_FIXED|MAP_PRIVATE|MAP_ANONYMOUS)",
		 (void *)page_addr(a, first), n * PG);
	m = mmap(page_addr(a, first), n * PG, PROT_READ | PROT_WRITE,
		 MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	count(C_FILLS, 1);
	if (!expect(what, m == MAP_FAILED ? errno : 0, 0, -1))
		return;
	model_map(a, first, n, K_PRIV, ++me.seg);
	if (madvise_huge(page_addr(a, first), n * PG))
		touch(a, first, n);
}

/*
 * MADV_COLLAPSE one 2 MiB block that is one VMA.  Whether it collapses
 * depends on what else maps the pages, so EAGAIN, ENOMEM, EBUSY and
 * EINVAL are all answers; the content must not change either way.
 */
static void op_collapse(struct area *a)
{
	static const int ok[] = { EAGAIN, ENOMEM, EBUSY, EINVAL };
	size_t first = below(a->npages / HP) * HP;
	char what[96];
	unsigned int j;
	int got;

	if (!range_info(a, first, HP).one_vma) {
		touch(a, first, HP);
		return;
	}
	count(C_COLLAPSES, 1);
	got = madvise(page_addr(a, first), HPAGE, MADV_COLLAPSE) ? errno : 0;
	for (j = 0; got && j < sizeof(ok) / sizeof(ok[0]) && ok[j] != got; j++)
		;
	snprintf(what, sizeof(what), "madvise(%p, %#lx, MADV_COLLAPSE)",
		 (void *)page_addr(a, first), HPAGE);
	if (got && j == sizeof(ok) / sizeof(ok[0]))
		report(C_ERRORS, "%s: %s, expected success, EAGAIN, ENOMEM, EBUSY or EINVAL",
		       what, ename(got));
	touch(a, first, HP);
}

static void op_new_area(struct area *a)
{
	area_destroy(a);
	new_area(a);
}

static void one_op(void);

/* A child that runs a few operations on its copy and exits; we wait. */
static void op_fork(void)
{
	char why[64];
	pid_t pid;
	int k, st;

	count(C_FORKS, 1);
	pid = fork();
	if (pid < 0) {
		expect("fork", errno, 0, -1);
		return;
	}
	if (pid == 0) {
		me.ppid = me.pid;
		me.pid = getpid();
		me.depth = D_FORK;
		me.nkids = 0;
		me.rng = mix(me.rng ^ (uint64_t)me.pid);
		model_forked();
		for (k = 1 + (int)below(FORK_OPS); k > 0 && !me.failed; k--)
			one_op();
		if (me.pages)
			count(C_PAGES, me.pages);
		_exit(me.failed ? 1 : 0);
	}
	if (wait_for(pid, &st, 0) < 0) {
		report(C_ERRORS, "waitpid(fork child %d): %s", pid, ename(errno));
		return;
	}
	/* A child that failed has said why; one that died has not. */
	if (!WIFEXITED(st)) {
		describe_status(st, why, sizeof(why));
		report(C_ERRORS, "fork child %d died: %s", pid, why);
	}
}

static void __attribute__((noreturn)) participate(void);

/* A child that runs operations in parallel with us until it retires. */
static void op_spawn(void)
{
	int s = me.nkids < MAX_KIDS ? slot_alloc() : -1;
	pid_t pid;

	if (s < 0) {
		op_fork();
		return;
	}
	count(C_SPAWNS, 1);
	pid = fork();
	if (pid < 0) {
		slot_free(s);
		expect("fork", errno, 0, -1);
		return;
	}
	if (pid == 0) {
		me.ppid = me.pid;
		me.pid = getpid();
		me.depth = D_KID;
		me.slot = s;
		me.nkids = 0;
		me.rng = mix(me.rng ^ (uint64_t)me.pid);
		model_forked();
		me.ops_left = 10 + (long)below(KID_OPS);
		atomic_store(&sh->slot[s].pid, me.pid);
		end_op();
		participate();
	}
	atomic_store(&sh->slot[s].pid, pid);
	me.kid[me.nkids++] = (struct kid){ .pid = pid, .slot = s };
}

static void one_op(void)
{
	struct area *a = &me.area[below(MAX_AREAS)];
	size_t w = below(100);

	if (!a->npages && new_area(a))
		return;
	if (w < 18)
		op_touch(a);
	else if (w < 22)
		touch(a, 0, a->npages);
	else if (w < 30)
		op_munmap(a);
	else if (w < 42)
		op_mprotect(a);
	else if (w < 54)
		op_dontneed(a);
	else if (w < 68)
		op_mremap(a);
	else if (w < 75)
		op_fill(a);
	else if (w < 79)
		op_new_area(a);
	else if (w < 83)
		op_collapse(a);
	else if (w < 95 && me.depth != D_FORK)
		op_fork();
	else if (me.depth == D_WORKER)
		op_spawn();
	else
		op_touch(a);
}

/*
 * The loop of a worker or a long-lived child.  When it is done, it asks its
 * children to retire and kills each retired one inside an operation, so no
 * audit runs while their mms go; then it retires itself (busy clear) and
 * waits: a worker for the end of the run, a child for its parent.
 */
/* The parent died (a worker's monitor, a child's worker): nobody will stop us. */
static int orphaned(void)
{
	return getppid() != me.ppid;
}

static void __attribute__((noreturn)) participate(void)
{
	struct slot *self = &sh->slot[me.slot];
	int done = 0, k;

	for (;;) {
		begin_op();
		reap_kids(REAP_RETIRED);
		if (!done && (atomic_load(&sh->stop) || atomic_load(&self->quit) || me.failed ||
			      orphaned() || (me.depth == D_KID && me.ops_left-- <= 0))) {
			done = 1;
			for (k = 0; k < me.nkids; k++)
				atomic_store(&sh->slot[me.kid[k].slot].quit, 1);
		}
		if (done && !me.nkids)
			break;
		if (done) {
			end_op();
			usleep(1000);
			continue;
		}
		one_op();
		count(C_OPS, 1);
		end_op();
	}
	atomic_store(&self->retired, 1);
	end_op();
	for (;;) {
		if (me.depth == D_WORKER && (atomic_load(&sh->stop) || orphaned()))
			_exit(me.failed ? 1 : 0);
		usleep(10000);
	}
}

static void __attribute__((noreturn)) worker(int index, int slot, uint64_t seed)
{
	int i;

	me.ppid = me.pid;
	me.pid = getpid();
	me.index = index;
	me.slot = slot;
	me.depth = D_WORKER;
	me.rng = mix(seed + (uint64_t)index);
	atomic_store(&sh->slot[slot].pid, me.pid);
	for (i = 0; i < MAX_AREAS && !me.failed; i++)
		area_create(&me.area[i], i == MAX_AREAS - 1 ? K_SHARED : K_PRIV,
			    (2 + below(3)) * HP);
	end_op();
	participate();
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	char buf[160];
	int n;

	(void)uc;
	n = snprintf(buf, sizeof(buf), "# %s %d (pid %d): %s at %p\n", role(), me.index,
		     (int)getpid(), sig == SIGBUS ? "SIGBUS" : "SIGSEGV", si->si_addr);
	if (n > 0)
		write_full(1, buf, (size_t)n);
	/* SA_RESETHAND: returning faults again and ends the process by the signal. */
}

/* ------------------------------------------------------------------ */
/* The monitor                                                         */
/* ------------------------------------------------------------------ */

struct audit {
	long checked, mismatches, skipped, tuples;
};

/* Write "all" to the audit file and read the result back: 0 or an errno. */
static int audit_all(struct audit *res)
{
	char buf[256];
	ssize_t n;
	int fd, err;

	fd = open(AUDIT_PATH, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	n = write(fd, "all\n", 4);
	err = n < 0 ? errno : n != 4 ? EIO : 0;
	close(fd);
	if (err)
		return err;
	fd = open(AUDIT_PATH, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	n = read(fd, buf, sizeof(buf) - 1);
	err = errno;
	close(fd);
	if (n <= 0)
		return n < 0 ? err : ENODATA;
	buf[n] = '\0';
	if (sscanf(buf, "checked=%ld mismatches=%ld skipped=%ld tuples=%ld", &res->checked,
		   &res->mismatches, &res->skipped, &res->tuples) != 4)
		return EPROTO;
	return 0;
}

/* /dev/kmsg from its end on, so the lines an audit logs can be shown. */
static int kmsg_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd >= 0)
		lseek(fd, 0, SEEK_END);
	return fd;
}

static void kmsg_show(int fd, const char *prefix)
{
	char rec[2048], *msg;
	int shown = 0;
	ssize_t n;

	if (fd < 0)
		return;
	while (shown < MAX_KMSG) {
		n = read(fd, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)	/* overwritten: go on */
			continue;
		if (n <= 0)
			break;
		rec[n] = '\0';
		msg = strchr(rec, ';');
		if (!msg || !strstr(msg, "folio_mapcount audit"))
			continue;
		msg[strcspn(msg, "\n")] = '\0';
		out("# %s: kernel: %s\n", prefix, msg + 1);
		shown++;
	}
	close(fd);
}

struct wstate {
	pid_t pid;
	int slot;
	int done;
	int status;
};

static struct wstate workers[MAX_WORKERS];
static int nworkers;
static int monitor_problems;

static void monitor_problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void monitor_problem(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	monitor_problems++;
	out("# monitor: %s\n", msg);
}

/* Collect whatever died: workers, and orphans of a worker that died. */
static void reap_children(int flags)
{
	char why[64];
	pid_t pid;
	int st, i;

	while ((pid = wait_for(-1, &st, flags)) > 0) {
		for (i = 0; i < MAX_SLOTS; i++)
			if (atomic_load(&sh->slot[i].pid) == pid)
				slot_free(i);
		for (i = 0; i < nworkers && workers[i].pid != pid; i++)
			;
		if (i < nworkers) {
			workers[i].done = 1;
			workers[i].status = st;
			if (!atomic_load(&sh->stop)) {
				describe_status(st, why, sizeof(why));
				monitor_problem("worker %d (pid %d) ended before the stop: %s", i,
						pid, why);
			}
		} else if (!atomic_load(&sh->stop)) {
			describe_status(st, why, sizeof(why));
			monitor_problem("orphan pid %d died: %s", pid, why);
		}
	}
}

static int busy_slots(void)
{
	int i, busy = 0;

	for (i = 0; i < MAX_SLOTS; i++)
		busy += atomic_load(&sh->slot[i].busy) != 0;
	return busy;
}

/* Every process between two operations: 0, or ETIMEDOUT. */
static int pause_all(double *waited)
{
	double t = now();

	atomic_store(&sh->pause, 1);
	while (busy_slots()) {
		reap_children(WNOHANG);
		if (now() - t > PAUSE_TIMEOUT) {
			*waited = now() - t;
			return ETIMEDOUT;
		}
		usleep(500);
	}
	*waited = now() - t;
	return 0;
}

static int workers_alive(void)
{
	int i, alive = 0;

	for (i = 0; i < nworkers; i++)
		alive += !workers[i].done;
	return alive;
}

/* The run is over: let the workers kill their children and exit. */
static void stop_all(void)
{
	double t = now();
	int i;

	atomic_store(&sh->stop, 1);
	atomic_store(&sh->pause, 0);
	while (workers_alive() && now() - t < STOP_TIMEOUT) {
		reap_children(WNOHANG);
		usleep(10000);
	}
	for (i = 0; i < nworkers; i++) {
		if (!workers[i].done) {
			monitor_problem("worker %d (pid %d) did not exit within %.0f s: killed",
					i, workers[i].pid, STOP_TIMEOUT);
			kill(workers[i].pid, SIGKILL);
		}
	}
	for (i = 0; i < MAX_SLOTS; i++) {
		pid_t pid = atomic_load(&sh->slot[i].pid);

		if (pid > 0)
			kill(pid, SIGKILL);
	}
	reap_children(0);
}

struct knob {
	const char *path;
	char old[32];		/* the value to put back; "" if unchanged */
};

/* The bracketed word of a sysfs choice file ("always [madvise] never"). */
static int knob_read(const char *path, char *val, size_t size)
{
	char buf[256], *l, *r;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	l = strchr(buf, '[');
	r = l ? strchr(l, ']') : NULL;
	if (!r || (size_t)(r - l - 1) >= size)
		return -1;
	memcpy(val, l + 1, (size_t)(r - l - 1));
	val[r - l - 1] = '\0';
	return 0;
}

static int knob_write(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), err = 0;

	if (fd < 0)
		return errno;
	if (write(fd, val, strlen(val)) < 0)
		err = errno;
	close(fd);
	return err;
}

/* Raise a THP knob from one of the `low` values to `want`; says what it did. */
static void knob_raise(struct knob *k, const char *low1, const char *low2, const char *want,
		       int leave)
{
	char cur[32];
	int err;

	k->old[0] = '\0';
	if (knob_read(k->path, cur, sizeof(cur))) {
		out("# %s: not readable (%s)\n", k->path, ename(errno));
		return;
	}
	if (leave || (strcmp(cur, low1) && (!low2 || strcmp(cur, low2)))) {
		out("# %s: %s\n", k->path, cur);
		return;
	}
	err = knob_write(k->path, want);
	if (err) {
		out("# %s: %s (cannot set %s: %s)\n", k->path, cur, want, ename(err));
		return;
	}
	snprintf(k->old, sizeof(k->old), "%s", cur);
	out("# %s: %s (was %s; put back at the end)\n", k->path, want, cur);
}

static void knob_restore(struct knob *k)
{
	if (k->old[0])
		knob_write(k->path, k->old);
}

struct run {
	double t0;
	double paused;		/* s the workers spent paused */
	const char *skip;	/* why there is no audit, or NULL */
	long mismatches, live_mismatches;
	int audits, test, failed;
};

/* Seconds the workers have run, paused time not counted. */
static double worked(const struct run *run)
{
	return now() - run->t0 - run->paused;
}

/* Wait until the workers have run `until` seconds; how late that already was. */
static double wait_work(struct run *run, double until)
{
	double late = worked(run) - until;

	while (worked(run) < until) {
		reap_children(WNOHANG);
		usleep(20000);
	}
	return late;
}

/* Audit with the workers running (not judged): say what it found. */
static void live_audit(struct run *run, long k)
{
	struct audit live = { 0 };
	int kfd = kmsg_open(), err;

	err = audit_all(&live);
	if (err)
		out("# audit %ld: live audit: %s\n", k, ename(err));
	else if (live.mismatches)
		out("# audit %ld: live audit: checked=%ld mismatches=%ld with the workers running (not judged: zaps do not take the folio lock)\n",
		    k, live.checked, live.mismatches);
	else
		out("# audit %ld: live audit: checked=%ld mismatches=0\n", k, live.checked);
	run->live_mismatches += err ? 0 : live.mismatches;
	if (!err && live.mismatches)
		kmsg_show(kfd, "live");
	else if (kfd >= 0)
		close(kfd);
}

/* One round: pause every process, audit (the judged one), resume; one test line. */
static void audit_round(struct run *run, long k, int last)
{
	double at, waited, took = 0, worked_s = worked(run);
	struct audit q = { 0 };
	int err, kfd = -1;

	at = now();
	err = pause_all(&waited);
	if (err) {
		atomic_store(&sh->pause, 0);
		run->paused += now() - at;
		run->failed = 1;
		out("not ok %d - audit %ld at %.1fs: the workers did not pause within %.0f s (%d busy)\n",
		    ++run->test, k, at - run->t0, PAUSE_TIMEOUT, busy_slots());
		return;
	}
	if (!run->skip) {
		kfd = kmsg_open();
		took = now();
		err = audit_all(&q);
		took = now() - took;
	}
	if (last)
		atomic_store(&sh->stop, 1);
	atomic_store(&sh->pause, 0);
	run->paused += now() - at;
	if (run->skip) {
		out("ok %d - audit %ld at %.1fs: worked=%.1fs paused_in=%.3fs ops=%lu forks=%lu mremaps=%lu # SKIP %s\n",
		    ++run->test, k, at - run->t0, worked_s, waited, counted(C_OPS), counted(C_FORKS),
		    counted(C_MREMAPS), run->skip);
		return;
	}
	if (err) {
		if (kfd >= 0)
			close(kfd);
		run->failed = 1;
		out("not ok %d - audit %ld at %.1fs: %s: %s\n", ++run->test, k, at - run->t0,
		    AUDIT_PATH, ename(err));
		return;
	}
	run->audits++;
	run->mismatches += q.mismatches;
	run->failed |= q.mismatches != 0;
	out("%s %d - audit %ld at %.1fs: checked=%ld mismatches=%ld skipped=%ld tuples=%ld worked=%.1fs paused_in=%.3fs took=%.1fs ops=%lu forks=%lu mremaps=%lu\n",
	    q.mismatches ? "not ok" : "ok", ++run->test, k, at - run->t0, q.checked, q.mismatches,
	    q.skipped, q.tuples, worked_s, waited, took, counted(C_OPS), counted(C_FORKS),
	    counted(C_MREMAPS));
	if (q.mismatches)
		kmsg_show(kfd, "paused");
	else if (kfd >= 0)
		close(kfd);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: mmstress [-p procs] [-t seconds] [-i interval] [-L n] [-s seed] [-K]\n");
	exit(2);
}

static long arg_long(const char *s, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < lo || v > hi)
		usage();
	return v;
}

/* After every worker has exited: whatever is left must add up too. */
static void final_audit(struct run *run)
{
	struct audit fin = { 0 };
	int kfd, err;

	if (run->skip) {
		out("ok %d - audit after exit # SKIP %s\n", ++run->test, run->skip);
		return;
	}
	kfd = kmsg_open();
	err = audit_all(&fin);
	if (err) {
		run->failed = 1;
		out("not ok %d - audit after exit: %s: %s\n", ++run->test, AUDIT_PATH, ename(err));
	} else {
		run->audits++;
		run->mismatches += fin.mismatches;
		run->failed |= fin.mismatches != 0;
		out("%s %d - audit after exit: checked=%ld mismatches=%ld skipped=%ld tuples=%ld\n",
		    fin.mismatches ? "not ok" : "ok", ++run->test, fin.checked, fin.mismatches,
		    fin.skipped, fin.tuples);
	}
	if (!err && fin.mismatches)
		kmsg_show(kfd, "after exit");
	else if (kfd >= 0)
		close(kfd);
}

/* The workers' test: every worker exited 0 and nobody reported a problem. */
static void workers_test(struct run *run)
{
	char why[64], counts[512];
	int i, bad = monitor_problems || counted(C_ERRORS);

	for (i = 0; i < nworkers; i++) {
		if (workers[i].done && WIFEXITED(workers[i].status) &&
		    !WEXITSTATUS(workers[i].status))
			continue;
		bad = 1;
		if (!workers[i].done) {
			out("# worker %d (pid %d) was never reaped\n", i, workers[i].pid);
			continue;
		}
		describe_status(workers[i].status, why, sizeof(why));
		out("# worker %d (pid %d): %s\n", i, workers[i].pid, why);
	}
	run->failed |= bad;
	fmt_counts(counts, sizeof(counts));
	out("%s %d - workers finished without errors: %s\n", bad ? "not ok" : "ok", ++run->test,
	    counts);
}

/*
 * The series' rmap call counters (folio_mapcount/rmap_stats), as comments:
 * pages per call show how much the batched zap, fork and unmap paths batch.
 */
static void show_rmap_stats(void)
{
	char line[256];
	FILE *f = fopen(RMAP_STATS_PATH, "re");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		out("# rmap_stats: %s", line);
	fclose(f);
}

int main(int argc, char **argv)
{
	long procs = 4, seconds = 60, interval = 5, live_every = 1, rounds, k;
	struct knob thp = { THP_ENABLED, "" }, shmem = { THP_SHMEM, "" };
	char skip_buf[160], counts[512];
	struct run run = { 0 };
	int opt, leave = 0, live, s, i;
	double step, late, due;
	uint64_t seed = 0;
	struct sigaction sa;
	pid_t pid;

	while ((opt = getopt(argc, argv, "p:t:i:s:L:K")) != -1) {
		switch (opt) {
		case 'p':
			procs = arg_long(optarg, 1, MAX_WORKERS);
			break;
		case 't':
			seconds = arg_long(optarg, 1, 86400);
			break;
		case 'i':
			interval = arg_long(optarg, 1, 86400);
			break;
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'L':
			live_every = arg_long(optarg, 0, 86400);
			break;
		case 'K':
			leave = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	if (!seed)
		seed = mix((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20));
	rounds = seconds / interval > 0 ? seconds / interval : 1;
	step = (double)seconds / (double)rounds;
	signal(SIGPIPE, SIG_IGN);

	out("TAP version 13\n1..%ld\n", rounds + 2);
	out("# mmstress: %ld workers, %ld s of work, %ld audits (every %.1f s; live too every %ld), seed %" PRIu64 "\n",
	    procs, seconds, rounds, step, live_every, seed);
	knob_raise(&thp, "never", NULL, "madvise", leave);
	knob_raise(&shmem, "never", "deny", "advise", leave);
	have_thp = access(THP_ENABLED, F_OK) == 0;
	if (access(AUDIT_PATH, R_OK | W_OK)) {
		snprintf(skip_buf, sizeof(skip_buf), "%s %s", AUDIT_PATH,
			 errno == ENOENT ? "is absent (a kernel without CONFIG_FOLIO_MAPCOUNT_DEBUG, or no debugfs)"
					 : ename(errno));
		run.skip = skip_buf;
	}

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		out("Bail out! mmap of the shared page: %s\n", ename(errno));
		return 1;
	}
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);

	run.t0 = now();
	me.pid = getpid();
	me.index = -1;
	for (i = 0; i < procs; i++) {
		s = slot_alloc();
		pid = s < 0 ? -1 : fork();
		if (pid == 0)
			worker(i, s, seed);
		if (pid < 0) {
			out("Bail out! fork of worker %d: %s\n", i, ename(s < 0 ? EAGAIN : errno));
			stop_all();
			return 1;
		}
		workers[nworkers++] = (struct wstate){ .pid = pid, .slot = s };
	}

	/*
	 * Round k pauses the workers once they have run k * step seconds,
	 * paused time not counted, so -t is the time they really work, and
	 * at least half a step after the last round.  The live audit goes half
	 * a step earlier; it competes with the workers for the CPUs (seconds
	 * under TCG), so a round whose live audit could not start on time has
	 * none and the next rounds catch up.
	 */
	for (k = 1, due = 0; k <= rounds; k++) {
		due = due + step / 2 > (double)k * step ? due + step / 2 : (double)k * step;
		live = live_every && k % live_every == 0 && !run.skip;
		if (live) {
			/* Late against the plan, k - 1/2 steps, not against `due`. */
			late = wait_work(&run, due - step / 2);
			late = (late > 0 ? late : 0) + due - (double)k * step;
			if (late > 0.5)
				out("# audit %ld: no live audit (%.1f s late)\n", k, late);
			else
				live_audit(&run, k);
		}
		wait_work(&run, due);
		audit_round(&run, k, k == rounds);
		due = worked(&run);
	}
	stop_all();
	workers_test(&run);
	final_audit(&run);
	knob_restore(&thp);
	knob_restore(&shmem);

	fmt_counts(counts, sizeof(counts));
	out("# %s audits=%d mismatches=%ld live_mismatches=%ld seconds=%.1f paused=%.1f\n", counts,
	    run.audits, run.mismatches, run.live_mismatches, now() - run.t0, run.paused);
	show_rmap_stats();
	return run.failed ? 1 : 0;
}
