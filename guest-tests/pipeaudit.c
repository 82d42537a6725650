// SPDX-License-Identifier: GPL-2.0
/*
 * pipeaudit - audit THPs that only a pipe holds, their mapper gone.
 *
 *	pipeaudit [-r rounds]
 *
 * The series' rmap audit (/sys/kernel/debug/folio_mapcount/audit) locks a
 * folio and walks its reverse map.  For an anonymous folio the folio lock
 * does not keep its anon_vma alive: once the last process mapping it has
 * exited, folio->mapping still points at the anon_vma, which is freed.  A
 * pipe that vmsplice() filled from the folio keeps the folio itself, so the
 * audit can meet exactly that folio.  Each round:
 *
 *   1. a child maps a 2 MiB aligned MADV_HUGEPAGE area, fills it, checks
 *      it got a THP (kpagemc: order 9), and shapes its mapping: PMD-mapped
 *      ("pmd"), PTE-mapped by an mprotect() of one page that splits the PMD
 *      ("pte"), or PTE-mapped and then half unmapped ("half");
 *   2. it vmsplice()s 16 pages spread over the THP into a pipe (no
 *      SPLICE_F_GIFT: the pipe takes references) and exits;
 *   3. the parent forks and reaps a few processes that map anonymous
 *      memory, so freed anon_vmas are allocated again, then audits the
 *      folio by PFN and with "all": the folio must read back unmapped
 *      (tuples=0, total_mapcount=0, pt_mapcount 0 or -1, status=ok), and
 *      "all" must report no mismatch;
 *   4. it reads the pipe and checks each page's contents.
 *
 * Output is TAP 13, one test per round and one for the kernel's own count of
 * wrong (VMA, page table) counts (folio_pt_mapcount/errors), which must not
 * grow.  A round whose folio was not a THP or was split before the audit
 * (the deferred split of the "half" case may win) is skipped with the
 * reason.  Without the audit file every test is skipped.  Exit status 0 when
 * no test failed.
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
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define AUDIT "/sys/kernel/debug/folio_mapcount/audit"
#define KPAGEMC "/sys/kernel/debug/folio_mapcount/kpagemc"
#define PT_ERRORS "/sys/kernel/debug/folio_pt_mapcount/errors"
#define PG 4096UL
#define THP (2UL << 20)
#define NR_SPLICED 16		/* pages put in the pipe: one every 32 */
#define SPLICE_STRIDE 32

static const char *const shapes[] = { "pmd", "pte", "half" };

static void die(const char *what)
{
	printf("Bail out! %s: %s\n", what, strerror(errno));
	exit(2);
}

/* The word every page of round @round starts with. */
static uint64_t stamp(int round, unsigned long page)
{
	return 0x5a5a000000000000ULL | ((uint64_t)round << 32) | page;
}

static uint64_t virt_to_pfn(const void *addr)
{
	uint64_t entry = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY);

	if (fd < 0)
		die("/proc/self/pagemap");
	if (pread(fd, &entry, sizeof(entry),
		  (off_t)((uintptr_t)addr / PG * sizeof(entry))) != sizeof(entry))
		die("pread pagemap");
	close(fd);
	return (entry >> 63) ? entry & ((1ULL << 55) - 1) : 0;
}

/* kpagemc's head PFN and order of @pfn's folio; -1 when it has no folio. */
static int folio_of(uint64_t pfn, uint64_t *head)
{
	unsigned char rec[64];
	uint32_t order, flags;
	int fd = open(KPAGEMC, O_RDONLY);

	if (fd < 0)
		return -1;
	if (pread(fd, rec, sizeof(rec), (off_t)(pfn * 64)) != sizeof(rec)) {
		close(fd);
		return -1;
	}
	close(fd);
	memcpy(head, rec + 8, sizeof(*head));
	memcpy(&order, rec + 16, sizeof(order));
	memcpy(&flags, rec + 20, sizeof(flags));
	return (flags & 1) ? (int)order : -1;
}

/* Write @cmd to the audit file and read the result into @buf. */
static int audit(const char *cmd, char *buf, size_t size)
{
	ssize_t n;
	int fd = open(AUDIT, O_WRONLY);

	if (fd < 0)
		return -1;
	n = write(fd, cmd, strlen(cmd));
	close(fd);
	if (n < 0)
		return -1;
	fd = open(AUDIT, O_RDONLY);
	if (fd < 0)
		return -1;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

static long field(const char *line, const char *name)
{
	const char *p = strstr(line, name);

	return p ? strtol(p + strlen(name), NULL, 10) : -999;
}

static long read_errors(void)
{
	char buf[32] = "";
	int fd = open(PT_ERRORS, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? strtol(buf, NULL, 10) : -1;
}

/*
 * The mapper: map a THP, shape it, splice pages of it into @pipe_w, send
 * its head PFN (0: no THP) on @info_w, exit.
 */
static void mapper(int round, const char *shape, int pipe_w, int info_w)
{
	uint64_t pfn = 0, head = 0;
	struct iovec iov[NR_SPLICED];
	unsigned long i;
	char *raw, *area;

	raw = mmap(NULL, 2 * THP, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		die("mmap");
	area = (char *)(((uintptr_t)raw + THP - 1) & ~(THP - 1));
	if (madvise(area, THP, MADV_HUGEPAGE))
		die("madvise");
	for (i = 0; i < THP / PG; i++)
		*(uint64_t *)(area + i * PG) = stamp(round, i);
	if (folio_of(virt_to_pfn(area), &head) == 9)
		pfn = head;

	if (strcmp(shape, "pmd")) {
		/* One read-only page in the middle splits the PMD. */
		if (mprotect(area + 5 * PG, PG, PROT_READ))
			die("mprotect");
	}
	for (i = 0; i < NR_SPLICED; i++) {
		iov[i].iov_base = area + i * SPLICE_STRIDE * PG;
		iov[i].iov_len = PG;
	}
	if (vmsplice(pipe_w, iov, NR_SPLICED, 0) != (ssize_t)(NR_SPLICED * PG))
		die("vmsplice");
	if (!strcmp(shape, "half") && munmap(area + THP / 2, THP / 2))
		die("munmap");
	if (write(info_w, &pfn, sizeof(pfn)) != sizeof(pfn))
		die("write");
	_exit(0);
}

/* Processes that map anonymous memory: freed anon_vmas get used again. */
static void churn_anon_vmas(void)
{
	int i;

	for (i = 0; i < 8; i++) {
		pid_t pid = fork();

		if (pid < 0)
			die("fork");
		if (!pid) {
			int k;

			for (k = 0; k < 16; k++) {
				char *p = mmap(NULL, 4 * PG,
					       PROT_READ | PROT_WRITE,
					       MAP_PRIVATE | MAP_ANONYMOUS, -1,
					       0);
				if (p == MAP_FAILED)
					_exit(1);
				p[0] = 1;
			}
			_exit(0);
		}
		waitpid(pid, NULL, 0);
	}
}

/* Read the pipe back: every page must hold what the mapper wrote. */
static int check_pipe(int pipe_r, int round, char *why, size_t size)
{
	static char page[PG];
	unsigned long i;

	for (i = 0; i < NR_SPLICED; i++) {
		size_t got = 0;

		while (got < PG) {
			ssize_t n = read(pipe_r, page + got, PG - got);

			if (n <= 0) {
				snprintf(why, size, "pipe read: %s",
					 n ? strerror(errno) : "EOF");
				return -1;
			}
			got += (size_t)n;
		}
		if (*(uint64_t *)page != stamp(round, i * SPLICE_STRIDE)) {
			snprintf(why, size, "page %lu of the pipe: wrong data",
				 i);
			return -1;
		}
	}
	return 0;
}

static int run_round(int test, int round, const char *shape)
{
	char one[256], all[256], cmd[32], why[600] = "";
	int pipefd[2], info[2], order;
	uint64_t pfn = 0, head = 0;
	long tuples, total, pt;
	pid_t pid;
	int bad = 0;

	if (pipe(pipefd) || pipe(info))
		die("pipe");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (!pid) {
		close(pipefd[0]);
		close(info[0]);
		mapper(round, shape, pipefd[1], info[1]);
	}
	close(pipefd[1]);
	close(info[1]);
	if (read(info[0], &pfn, sizeof(pfn)) != sizeof(pfn))
		die("read mapper");
	close(info[0]);
	waitpid(pid, NULL, 0);

	if (!pfn) {
		printf("ok %d - %s: round %d # SKIP the mapper got no THP\n",
		       test, shape, round);
		close(pipefd[0]);
		return 0;
	}
	churn_anon_vmas();
	order = folio_of(pfn, &head);
	snprintf(cmd, sizeof(cmd), "%" PRIu64 "\n", pfn);
	if (audit(cmd, one, sizeof(one)) || audit("all", all, sizeof(all)))
		die(AUDIT);
	if (check_pipe(pipefd[0], round, why, sizeof(why)))
		bad = 1;
	close(pipefd[0]);

	if (order != 9 || head != pfn) {
		printf("ok %d - %s: round %d # SKIP the folio was split before the audit (%s)\n",
		       test, shape, round, one);
		return bad;
	}
	tuples = field(one, "tuples=");
	total = field(one, "total_mapcount=");
	pt = field(one, "pt_mapcount=");
	if (!strstr(one, "status=ok") || tuples || total || (pt != 0 && pt != -1)) {
		snprintf(why, sizeof(why), "held only by the pipe, it audits as '%s'", one);
		bad = 1;
	}
	if (field(all, "mismatches=") != 0) {
		snprintf(why, sizeof(why), "audit all: '%s'", all);
		bad = 1;
	}
	printf("%s %d - %s: round %d: pfn %" PRIu64 " %s%s%s\n", bad ? "not ok" : "ok",
	       test, shape, round, pfn, bad ? why : one, bad ? "" : "; ", bad ? "" : all);
	return bad;
}

int main(int argc, char **argv)
{
	int rounds = 6, opt, i, failed = 0;
	long errors_before, errors_after;

	while ((opt = getopt(argc, argv, "r:")) != -1) {
		if (opt != 'r') {
			fprintf(stderr, "usage: pipeaudit [-r rounds]\n");
			return 2;
		}
		rounds = atoi(optarg);
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("TAP version 13\n1..%d\n", rounds + 1);
	if (access(AUDIT, W_OK)) {
		for (i = 1; i <= rounds + 1; i++)
			printf("ok %d - round # SKIP no %s\n", i, AUDIT);
		return 0;
	}
	errors_before = read_errors();
	for (i = 0; i < rounds; i++)
		failed |= run_round(i + 1, i, shapes[i % 3]);
	errors_after = read_errors();
	if (errors_before < 0) {
		printf("ok %d - W errors # SKIP no %s\n", rounds + 1, PT_ERRORS);
	} else {
		printf("%s %d - W errors: %ld before, %ld after\n",
		       errors_after == errors_before ? "ok" : "not ok", rounds + 1,
		       errors_before, errors_after);
		failed |= errors_after != errors_before;
	}
	return failed;
}
