// SPDX-License-Identifier: GPL-2.0
/*
 * mmbench - time the mm operations whose cost the kernel series changes.
 *
 *	mmbench [-r repeats] [-m MiB]
 *
 * Each operation works on an area of -m MiB (default 8: four 2 MiB THPs),
 * is set up untimed, and is timed -r times (default 7) with
 * CLOCK_MONOTONIC around the syscalls that do the work:
 *
 *   faultaround  read one byte per page of a shmem file of THPs mapped at
 *                an address 4 KiB off the THP alignment, so that faults map
 *                PTEs, fault_around_bytes at a time (filemap_map_pages)
 *   zap-shmem    munmap() of that mapping: PTE-mapped THPs, two folios in
 *                every page table
 *   zap-anon     munmap() of anonymous THPs PTE-mapped by an mprotect()
 *                round trip of one page each
 *   fork         fork() of a process that maps those PTE-mapped THPs, the
 *                child exiting at once, until waitpid() returns (copy and
 *                zap of the child's page tables)
 *   mprotect     mprotect() of one page inside each THP to read-only and
 *                back: a VMA split into three and a merge back, per THP
 *   mremap       mremap() of the PTE-mapped THPs to an address 4 KiB off
 *                the alignment and back (move_ptes())
 *
 * On a kernel with the series' counters each repeat also reports the rmap
 * calls (folio_mapcount/rmap_stats: calls and pages, summed over kinds) and
 * the cost of keeping W that does not depend on timing
 * (folio_pt_mapcount/scan_stats: page table slots read by the W scans and by
 * the recounts of VMA changes).  Where the kernel can turn the W scan's
 * window bound off (folio_pt_mapcount/bounded_scan), every operation is run
 * with it off (scan=table) and on (scan=window); otherwise scan=-.
 *
 * Output, one line per repeat, then a TAP verdict:
 *
 *   # mmbench op=<op> scan=<table|window|-> rep=<i> us=<time> rmap_calls=<n>
 *     rmap_pages=<n> ptes_read=<n> adjust_ptes_read=<n> whole_table=<n>
 *     (counters the kernel lacks read "-")
 *   ok 1 - mmbench: <ops> operations, <repeats> repeats
 *
 * "(Small) many large folios per page table" is not an operation: 6.1 makes
 * file folios of orders 2-8 only on XFS and AFS, which the harness's guest
 * does not have; zap-shmem's page tables hold two folios each instead.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RMAP_STATS "/sys/kernel/debug/folio_mapcount/rmap_stats"
#define SCAN_STATS "/sys/kernel/debug/folio_pt_mapcount/scan_stats"
#define BOUNDED "/sys/kernel/debug/folio_pt_mapcount/bounded_scan"
#define SHMEM_ENABLED "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
#define PG 4096UL
#define THP (2UL << 20)

static size_t area_size = 8UL << 20;

struct counters {
	long rmap_calls, rmap_pages, ptes_read, adjust_ptes_read, whole_table;
};

static void die(const char *what)
{
	printf("Bail out! %s: %s\n", what, strerror(errno));
	exit(2);
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, text, strlen(text));
	close(fd);
	return n < 0 ? -1 : 0;
}

static char *read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return NULL;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	return buf;
}

/* Sum of "<key>=<n>" over rmap_stats' lines; -1 without the file. */
static long sum_field(const char *text, const char *key)
{
	const char *p = text;
	size_t len = strlen(key);
	long sum = 0;

	if (!text)
		return -1;
	while ((p = strstr(p, key))) {
		sum += strtol(p + len, NULL, 10);
		p += len;
	}
	return sum;
}

/* "<name> <n>" of scan_stats; -1 without it. */
static long stat_line(const char *text, const char *name)
{
	const char *p;

	if (!text)
		return -1;
	for (p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, name, strlen(name)) && p[strlen(name)] == ' ')
			return strtol(p + strlen(name) + 1, NULL, 10);
	return -1;
}

static void reset_counters(void)
{
	write_file(RMAP_STATS, "0");
	write_file(SCAN_STATS, "0");
}

static void read_counters(struct counters *c)
{
	static char rmap[4096], scan[4096];
	char *r = read_file(RMAP_STATS, rmap, sizeof(rmap));
	char *s = read_file(SCAN_STATS, scan, sizeof(scan));

	c->rmap_calls = sum_field(r, "calls=");
	c->rmap_pages = sum_field(r, "pages=");
	c->ptes_read = stat_line(s, "ptes_read");
	c->adjust_ptes_read = stat_line(s, "adjust_ptes_read");
	c->whole_table = stat_line(s, "whole_table");
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static char *reserved;		/* the last reservation, for release() */
static size_t reserved_len;

/* A 2 MiB aligned start in a reservation of @size + 2 MiB, for MAP_FIXED. */
static char *reserve(size_t size)
{
	reserved_len = size + THP;
	reserved = mmap(NULL, reserved_len, PROT_NONE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (reserved == MAP_FAILED)
		die("mmap reserve");
	return (char *)(((uintptr_t)reserved + THP - 1) & ~(THP - 1));
}

static void release(void)
{
	munmap(reserved, reserved_len);
}

/* Anonymous THPs at @at, PTE-mapped by an mprotect() round trip. */
static void anon_pte_thps(char *at)
{
	size_t off;

	if (mmap(at, area_size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
		die("mmap anon");
	if (madvise(at, area_size, MADV_HUGEPAGE))
		die("madvise");
	for (off = 0; off < area_size; off += PG)
		at[off] = 1;
	for (off = 0; off < area_size; off += THP) {
		if (mprotect(at + off + 7 * PG, PG, PROT_READ) ||
		    mprotect(at + off + 7 * PG, PG, PROT_READ | PROT_WRITE))
			die("mprotect");
	}
}

enum op { FAULTAROUND, ZAP_SHMEM, ZAP_ANON, FORK, MPROTECT, MREMAP, NR_OPS };
static const char *const op_names[NR_OPS] = {
	"faultaround", "zap-shmem", "zap-anon", "fork", "mprotect", "mremap",
};

static int shmem_fd = -1;

/* A shmem file of THPs, filled once. */
static void make_shmem(void)
{
	char *map;
	size_t off;

	shmem_fd = memfd_create("mmbench", 0);
	if (shmem_fd < 0 || ftruncate(shmem_fd, (off_t)area_size))
		die("memfd");
	map = reserve(area_size);
	if (mmap(map, area_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		 shmem_fd, 0) == MAP_FAILED)
		die("mmap shmem");
	madvise(map, area_size, MADV_HUGEPAGE);
	for (off = 0; off < area_size; off += PG)
		map[off] = 1;
	release();
}

/* Run one repeat of @op; returns the timed microseconds. */
static double run_op(enum op op, struct counters *c)
{
	/* room for the area, once more for mremap, and the 4 KiB offsets */
	char *base = reserve(2 * area_size + THP), *at;
	double t0 = 0, t1 = 0;
	volatile char sink;
	size_t off;
	pid_t pid;

	switch (op) {
	case FAULTAROUND:
	case ZAP_SHMEM:
		at = base + PG;
		if (mmap(at, area_size, PROT_READ, MAP_SHARED | MAP_FIXED,
			 shmem_fd, 0) == MAP_FAILED)
			die("mmap shmem");
		reset_counters();
		t0 = now_us();
		for (off = 0; off < area_size; off += PG)
			sink = at[off];
		t1 = now_us();
		(void)sink;
		if (op == ZAP_SHMEM) {
			reset_counters();
			t0 = now_us();
			munmap(at, area_size);
			t1 = now_us();
		}
		break;
	case ZAP_ANON:
		anon_pte_thps(base);
		reset_counters();
		t0 = now_us();
		munmap(base, area_size);
		t1 = now_us();
		break;
	case FORK:
		anon_pte_thps(base);
		reset_counters();
		t0 = now_us();
		pid = fork();
		if (pid < 0)
			die("fork");
		if (!pid)
			_exit(0);
		waitpid(pid, NULL, 0);
		t1 = now_us();
		break;
	case MPROTECT:
		anon_pte_thps(base);
		reset_counters();
		t0 = now_us();
		for (off = 0; off < area_size; off += THP) {
			if (mprotect(base + off + 100 * PG, PG, PROT_READ) ||
			    mprotect(base + off + 100 * PG, PG,
				     PROT_READ | PROT_WRITE))
				die("mprotect");
		}
		t1 = now_us();
		break;
	case MREMAP:
		anon_pte_thps(base);
		at = base + area_size + PG;
		reset_counters();
		t0 = now_us();
		if (mremap(base, area_size, area_size,
			   MREMAP_MAYMOVE | MREMAP_FIXED, at) == MAP_FAILED ||
		    mremap(at, area_size, area_size,
			   MREMAP_MAYMOVE | MREMAP_FIXED, base) == MAP_FAILED)
			die("mremap");
		t1 = now_us();
		break;
	default:
		break;
	}
	read_counters(c);
	release();
	return t1 - t0;
}

static void print_count(const char *name, long value)
{
	if (value < 0)
		printf(" %s=-", name);
	else
		printf(" %s=%ld", name, value);
}

int main(int argc, char **argv)
{
	int repeats = 7, opt, rep, pass, passes;
	char saved[64] = "", *sel, *end;
	enum op op;

	while ((opt = getopt(argc, argv, "r:m:")) != -1) {
		switch (opt) {
		case 'r':
			repeats = atoi(optarg);
			break;
		case 'm':
			area_size = strtoul(optarg, NULL, 10) << 20;
			break;
		default:
			fprintf(stderr, "usage: mmbench [-r repeats] [-m MiB]\n");
			return 2;
		}
	}
	if (repeats < 1 || area_size < THP || area_size % THP) {
		fprintf(stderr, "mmbench: -r >= 1, -m a multiple of 2\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("TAP version 13\n1..1\n");

	/* shmem THPs when asked by MADV_HUGEPAGE; put back at the end */
	if (read_file(SHMEM_ENABLED, saved, sizeof(saved))) {
		sel = strchr(saved, '[');
		end = sel ? strchr(sel, ']') : NULL;
		if (sel && end) {
			memmove(saved, sel + 1, (size_t)(end - sel - 1));
			saved[end - sel - 1] = '\0';
		}
		write_file(SHMEM_ENABLED, "advise");
	}
	make_shmem();
	passes = access(BOUNDED, W_OK) ? 1 : 2;

	for (op = 0; op < NR_OPS; op++) {
		for (pass = 0; pass < passes; pass++) {
			const char *scan = passes == 1 ? "-" :
					   pass ? "window" : "table";

			if (passes == 2)
				write_file(BOUNDED, pass ? "Y" : "N");
			/* repeat -1 warms the caches up and is not shown */
			for (rep = -1; rep < repeats; rep++) {
				struct counters c;
				double us = run_op(op, &c);

				if (rep < 0)
					continue;

				printf("# mmbench op=%s scan=%s rep=%d us=%.1f",
				       op_names[op], scan, rep, us);
				print_count("rmap_calls", c.rmap_calls);
				print_count("rmap_pages", c.rmap_pages);
				print_count("ptes_read", c.ptes_read);
				print_count("adjust_ptes_read", c.adjust_ptes_read);
				print_count("whole_table", c.whole_table);
				printf("\n");
			}
		}
	}
	if (passes == 2)
		write_file(BOUNDED, "Y");
	if (saved[0])
		write_file(SHMEM_ENABLED, saved);
	printf("ok 1 - mmbench: %d operations, %d repeats\n", NR_OPS, repeats);
	return 0;
}
