// SPDX-License-Identifier: GPL-2.0
/*
 * mmwork - the folio-harness workload interpreter, run in the guest.
 *
 *	mmwork SCRIPT [-o OUT]
 *
 * Reads the line script described in guest-tests/WORKLOAD.md ("Guest
 * script") and writes the records described there ("Records") to OUT:
 * /dev/ttyS1 by default (stdout if that cannot be opened), stdout for "-o -".
 *
 * Design
 *
 * The process started is the coordinator.  It parses the whole script
 * first, so a bad script is refused before anything has run (exit 2).  It
 * then runs the script one line at a time.  Every named process of the
 * script is one real worker process; the coordinator talks to each worker
 * over its own AF_UNIX SOCK_SEQPACKET socketpair:
 *
 *   - "main" is forked from the coordinator before the first line runs, and
 *     "spawn" forks another worker the same way.  The coordinator maps
 *     nothing in the arena, so such a worker starts with an empty arena.
 *   - "fork P C": the coordinator makes a new socketpair and passes one end
 *     to worker P with SCM_RIGHTS; P calls fork(), the child closes P's
 *     channel and serves the new one, and P replies with the child's pid.
 *   - mmap of a file passes the coordinator's fd of that file along with the
 *     command (SCM_RIGHTS): a worker never needs to reopen a file by path,
 *     and a memfd works in every process however it was created.
 *   - file, punch, split, drop_caches, sysfs and mount are run by the
 *     coordinator itself; everything else by the worker that owns the mm.
 *
 * The coordinator sends one command and reads the worker's reply packets
 * until the final "done" packet before it runs the next line, so operations
 * happen in the script's global order.  Only the coordinator writes records:
 * a worker's probe output comes back as data packets which the coordinator
 * copies to OUT as they arrive, followed by the @STEP record.  Records are
 * written with write(2), whole lines at a time, nothing is buffered.
 *
 * A failing syscall is a step error (@STEP <n> <op> err <errno> <NAME>); the
 * script goes on.  A worker that dies (signal, OOM kill) is "lost": the step
 * reports ECHILD, later steps of that process report ESRCH, and the scenario
 * ends with "err" (exit status 1) after the rest of the script has run.
 *
 * The coordinator is a child subreaper, so a forked worker whose parent
 * worker exited is still reaped by it; workers ignore SIGCHLD so that their
 * own fork children never linger as zombies.  Exit is confirmed by EOF on the
 * worker's channel: the kernel closes files after it has dropped the mm.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE	0x100000
#endif
#ifndef MADV_COLD
#define MADV_COLD		20
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT		21
#endif
#ifndef PR_SET_CHILD_SUBREAPER
#define PR_SET_CHILD_SUBREAPER	36
#endif

#define PG			4096ULL
#define NAME_LEN		64	/* process, file and label names */
#define MAX_PROCS		64	/* processes alive at once */
#define MAX_FILES		64
#define MAX_TOKENS		12
#define PKT_MAX			32768	/* worker -> coordinator */
#define PKT_LINE_RESERVE	512	/* longest line a worker formats */
#define PM_CHUNK		65536	/* pagemap entries per pread */
#define PFN_WIN			512	/* kpage* entries cached */
#define PFN_SPAN_MIN		8	/* kpage* entries read after a jump */
#define FOLIO_MAX		(1ULL << 18)	/* 1 GiB hugetlb */

/* /proc/<pid>/pagemap */
#define PM_PRESENT		(1ULL << 63)
#define PM_PFN_MASK		((1ULL << 55) - 1)

/* /proc/kpageflags, include/uapi/linux/kernel-page-flags.h */
#define KPF_COMPOUND_HEAD	(1ULL << 15)
#define KPF_COMPOUND_TAIL	(1ULL << 16)

#define SPLIT_PATH		"/sys/kernel/debug/split_huge_pages"
#define DROP_CACHES_PATH	"/proc/sys/vm/drop_caches"

/* Step result: 0, a positive errno, or the worker died during the step. */
#define STEP_LOST		(-1)

#define EXIT_OK			0
#define EXIT_FAILURE_RUN	1
#define EXIT_BAD_SCRIPT		2

/* ------------------------------------------------------------------ */
/* Script                                                              */
/* ------------------------------------------------------------------ */

enum line_kind {
	L_SCENARIO,
	L_SYSFS,
	L_MOUNT,
	L_STEP,
	L_END,
};

enum op {
	OP_SPAWN,
	OP_FORK,
	OP_EXIT,
	OP_FILE,
	OP_MMAP,
	OP_MUNMAP,
	OP_MREMAP,
	OP_MPROTECT,
	OP_MADVISE,
	OP_TOUCH,
	OP_PUNCH,
	OP_SPLIT,
	OP_DROP_CACHES,
	OP_PROBE,
	OP_OPEN,
	OP_RECALL,
	NR_OPS,
};

/* Name and token count ("step <n> <op> ...") of every step op. */
static const struct {
	const char *name;
	int ntok;
} op_desc[NR_OPS] = {
	[OP_SPAWN]		= { "spawn", 4 },
	[OP_FORK]		= { "fork", 5 },
	[OP_EXIT]		= { "exit", 4 },
	[OP_FILE]		= { "file", 8 },
	[OP_MMAP]		= { "mmap", 10 },
	[OP_MUNMAP]		= { "munmap", 6 },
	[OP_MREMAP]		= { "mremap", 7 },
	[OP_MPROTECT]		= { "mprotect", 7 },
	[OP_MADVISE]		= { "madvise", 7 },
	[OP_TOUCH]		= { "touch", 7 },
	[OP_PUNCH]		= { "punch", 6 },
	[OP_SPLIT]		= { "split", 6 },
	[OP_DROP_CACHES]	= { "drop_caches", 3 },
	[OP_PROBE]		= { "probe", 7 },
	[OP_OPEN]		= { "open", 5 },
	[OP_RECALL]		= { "recall", 8 },
};

enum file_kind { F_MEMFD, F_TMPFS };
enum populate { POP_NONE, POP_WRITE, POP_FALLOCATE };

struct line {
	int lineno;
	enum line_kind kind;
	enum op op;
	unsigned long long step;
	char proc[NAME_LEN];	/* process running the step */
	char name[NAME_LEN];	/* fork child, probe label */
	char *path;		/* sysfs/mount path, tmpfs file path */
	char *value;		/* sysfs value; mount size */
	char *huge;		/* mount huge= */
	uint64_t addr;		/* address; punch: file offset */
	uint64_t len;
	uint64_t arg;		/* mremap: new address; mmap: file offset;
				 * file: size */
	int file;		/* file table index, -1: anonymous */
	int prot;		/* mmap, mprotect */
	int flags;		/* mmap: MAP_SHARED, MAP_ANONYMOUS... */
	int advice;		/* madvise */
	int write;		/* touch */
	enum file_kind fkind;	/* file */
	enum populate populate;	/* file */
};

struct file_def {
	char name[NAME_LEN];
	enum file_kind kind;
	const char *path;
	int of;			/* open: the file opened again, else -1 */
	int fd;			/* coordinator's fd, -1 until created */
};

/*
 * A page an earlier probe saw, which a later "recall" step looks at again
 * by PFN: the coordinator notes it from the probe's @PAGE record as the
 * record passes through to the output.
 */
#define MAX_REMEMBERED		64
struct remembered {
	char label[NAME_LEN];	/* the earlier probe */
	uint64_t va;
	int have;		/* the probe showed the page present */
	uint64_t pfn, head;
	int order;
};
static struct remembered remembered[MAX_REMEMBERED];
static int nr_remembered;
static const char *probing_label;	/* label of the probe running, or NULL */

struct script {
	const char *name;	/* "-" until the scenario line is read */
	struct line *lines;
	size_t nlines;
	struct file_def files[MAX_FILES];
	int nfiles;
};

struct parser {
	struct script *s;
	int lineno;
	char err[512];
	/* processes alive at this point of the script */
	char procs[MAX_PROCS][NAME_LEN];
	int nprocs;
	int seen_scenario;
	int seen_end;
};

/* ------------------------------------------------------------------ */
/* Coordinator <-> worker protocol                                     */
/* ------------------------------------------------------------------ */

struct cmd {
	int32_t op;		/* enum op */
	int32_t arg1;		/* prot, advice, touch write */
	int32_t arg2;		/* mmap flags */
	int32_t pad;
	uint64_t addr;
	uint64_t len;
	uint64_t arg;		/* mmap file offset, mremap new address */
	char proc[NAME_LEN];
	char label[NAME_LEN];
};

enum { R_DATA = 1, R_DONE = 2 };

struct reply {
	int32_t kind;		/* R_DATA: record text follows */
	int32_t err;		/* R_DONE: 0 or errno */
	int64_t val;		/* R_DONE: fork child pid */
};

/* ------------------------------------------------------------------ */
/* Errno names                                                         */
/* ------------------------------------------------------------------ */

#define E(x) { x, #x }
static const struct {
	int err;
	const char *name;
} errno_names[] = {
	E(EPERM), E(ENOENT), E(ESRCH), E(EINTR), E(EIO), E(ENXIO), E(E2BIG),
	E(ENOEXEC), E(EBADF), E(ECHILD), E(EAGAIN), E(ENOMEM), E(EACCES),
	E(EFAULT), E(EBUSY), E(EEXIST), E(EXDEV), E(ENODEV), E(ENOTDIR),
	E(EISDIR), E(EINVAL), E(ENFILE), E(EMFILE), E(ENOTTY), E(ETXTBSY),
	E(EFBIG), E(ENOSPC), E(ESPIPE), E(EROFS), E(EMLINK), E(EPIPE),
	E(ERANGE), E(EDEADLK), E(ENAMETOOLONG), E(ENOLCK), E(ENOSYS),
	E(ENOTEMPTY), E(ELOOP), E(ENODATA), E(EOVERFLOW), E(EOPNOTSUPP),
	E(ENOTCONN), E(ECONNRESET), E(ETIMEDOUT), E(EHWPOISON),
};
#undef E

static const char *errno_name(int err, char *buf, size_t size)
{
	size_t i;

	for (i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
		if (errno_names[i].err == err)
			return errno_names[i].name;
	snprintf(buf, size, "E%d", err);
	return buf;
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static ssize_t write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = write(fd, p + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = pread(fd, p + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* Read a whole (proc) file into a NUL-terminated malloc'd buffer. */
static char *read_text(const char *path, int *err)
{
	size_t size = 16384, len = 0;
	char *buf, *nbuf;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		*err = errno;
		return NULL;
	}
	buf = malloc(size);
	if (!buf) {
		*err = ENOMEM;
		close(fd);
		return NULL;
	}
	for (;;) {
		if (size - len < 4096) {
			nbuf = realloc(buf, size * 2);
			if (!nbuf) {
				*err = ENOMEM;
				goto fail;
			}
			buf = nbuf;
			size *= 2;
		}
		n = read(fd, buf + len, size - len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			*err = errno;
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	return buf;
fail:
	close(fd);
	free(buf);
	return NULL;
}

/* Write a string to a sysfs/procfs/debugfs file; 0 or errno. */
static int write_file(const char *path, const char *value)
{
	size_t len = strlen(value);
	ssize_t n;
	int fd, err = 0;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	n = write(fd, value, len);
	if (n < 0)
		err = errno;
	else if ((size_t)n != len)
		err = EIO;
	if (close(fd) && !err)
		err = errno;
	return err;
}

static int mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	size_t i, len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0755) && errno != EEXIST)
			return errno;
		buf[i] = path[i];
	}
	return 0;
}

static void copy_name(char *dst, const char *src)
{
	snprintf(dst, NAME_LEN, "%s", src);
}

/* ------------------------------------------------------------------ */
/* Script parser                                                       */
/* ------------------------------------------------------------------ */

static int perr(struct parser *ps, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int perr(struct parser *ps, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ps->err, sizeof(ps->err), fmt, ap);
	va_end(ap);
	return -1;
}

/* Decimal unsigned 64-bit number, the whole token. */
static int parse_u64(struct parser *ps, const char *tok, const char *what,
		     uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!isdigit((unsigned char)tok[0]))
		return perr(ps, "%s: not a decimal number: '%s'", what, tok);
	errno = 0;
	v = strtoull(tok, &end, 10);
	if (errno || *end)
		return perr(ps, "%s: not a decimal number: '%s'", what, tok);
	*out = v;
	return 0;
}

static int parse_name(struct parser *ps, const char *tok, const char *what,
		      char *out)
{
	const char *p;

	if (strlen(tok) >= NAME_LEN)
		return perr(ps, "%s: name longer than %d characters: '%s'",
			    what, NAME_LEN - 1, tok);
	for (p = tok; *p; p++)
		if (!isgraph((unsigned char)*p))
			return perr(ps, "%s: bad character in name", what);
	copy_name(out, tok);
	return 0;
}

/* Index of tok in the NULL-terminated list words, or an error. */
static int parse_word(struct parser *ps, const char *tok, const char *what,
		      const char *const *words)
{
	int i;

	for (i = 0; words[i]; i++)
		if (!strcmp(tok, words[i]))
			return i;
	return perr(ps, "%s: unknown value '%s'", what, tok);
}

static int proc_index(struct parser *ps, const char *name)
{
	int i;

	for (i = 0; i < ps->nprocs; i++)
		if (!strcmp(ps->procs[i], name))
			return i;
	return -1;
}

static int need_proc(struct parser *ps, const char *name)
{
	if (proc_index(ps, name) < 0)
		return perr(ps, "unknown process '%s'", name);
	return 0;
}

static int add_proc(struct parser *ps, const char *name)
{
	if (proc_index(ps, name) >= 0)
		return perr(ps, "process '%s' already exists", name);
	if (ps->nprocs >= MAX_PROCS)
		return perr(ps, "more than %d processes", MAX_PROCS);
	copy_name(ps->procs[ps->nprocs++], name);
	return 0;
}

static void del_proc(struct parser *ps, const char *name)
{
	int i = proc_index(ps, name);

	if (i < 0)
		return;
	ps->nprocs--;
	memmove(ps->procs[i], ps->procs[i + 1],
		(size_t)(ps->nprocs - i) * NAME_LEN);
}

static int file_index(struct script *s, const char *name)
{
	int i;

	for (i = 0; i < s->nfiles; i++)
		if (!strcmp(s->files[i].name, name))
			return i;
	return -1;
}

static int parse_prot(struct parser *ps, const char *tok, int *prot)
{
	static const char *const words[] = { "r", "rw", "none", NULL };
	static const int prots[] = {
		PROT_READ, PROT_READ | PROT_WRITE, PROT_NONE,
	};
	int i = parse_word(ps, tok, "prot", words);

	if (i < 0)
		return -1;
	*prot = prots[i];
	return 0;
}

/* "<proc> <addr> <length>" at tok[0..2] */
static int parse_range(struct parser *ps, struct line *l, char **tok)
{
	if (parse_name(ps, tok[0], "process", l->proc) ||
	    need_proc(ps, l->proc) ||
	    parse_u64(ps, tok[1], "addr", &l->addr) ||
	    parse_u64(ps, tok[2], "length", &l->len))
		return -1;
	return 0;
}

static int parse_file_step(struct parser *ps, struct line *l, char **tok)
{
	static const char *const kinds[] = { "memfd", "tmpfs", NULL };
	static const char *const pops[] = {
		"none", "write", "fallocate", NULL,
	};
	struct script *s = ps->s;
	struct file_def *f;
	int kind, pop;

	if (parse_name(ps, tok[0], "file", l->name))
		return -1;
	if (!strcmp(l->name, "anon"))
		return perr(ps, "file: 'anon' is reserved");
	if (file_index(s, l->name) >= 0)
		return perr(ps, "file '%s' already exists", l->name);
	if (s->nfiles >= MAX_FILES)
		return perr(ps, "more than %d files", MAX_FILES);
	kind = parse_word(ps, tok[1], "file kind", kinds);
	if (kind < 0)
		return -1;
	if (kind == F_MEMFD && strcmp(tok[2], "-"))
		return perr(ps, "memfd file takes '-' as path, not '%s'",
			    tok[2]);
	if (kind == F_TMPFS && tok[2][0] != '/')
		return perr(ps, "tmpfs file path must be absolute: '%s'",
			    tok[2]);
	if (parse_u64(ps, tok[3], "size", &l->arg))
		return -1;
	pop = parse_word(ps, tok[4], "populate", pops);
	if (pop < 0)
		return -1;
	l->fkind = kind;
	l->populate = pop;
	l->path = kind == F_TMPFS ? strdup(tok[2]) : NULL;
	l->file = s->nfiles;
	f = &s->files[s->nfiles++];
	copy_name(f->name, l->name);
	f->kind = kind;
	f->path = l->path;
	f->of = -1;
	f->fd = -1;
	return 0;
}

/* "open <file> <of>": a second struct file of the inode of <of>. */
static int parse_open_step(struct parser *ps, struct line *l, char **tok)
{
	struct script *s = ps->s;
	char of[NAME_LEN];
	struct file_def *f;
	int i;

	if (parse_name(ps, tok[0], "file", l->name) ||
	    parse_name(ps, tok[1], "file", of))
		return -1;
	if (!strcmp(l->name, "anon"))
		return perr(ps, "open: 'anon' is reserved");
	if (file_index(s, l->name) >= 0)
		return perr(ps, "file '%s' already exists", l->name);
	i = file_index(s, of);
	if (i < 0)
		return perr(ps, "open: unknown file '%s'", of);
	if (s->nfiles >= MAX_FILES)
		return perr(ps, "more than %d files", MAX_FILES);
	l->file = s->nfiles;
	l->arg = (uint64_t)i;
	f = &s->files[s->nfiles++];
	copy_name(f->name, l->name);
	f->kind = s->files[i].kind;
	f->path = s->files[i].path;
	f->of = i;
	f->fd = -1;
	return 0;
}

/*
 * "recall <label> <of> <va> <file|anon> <index>": look again at the folio
 * probe <of> saw at <va>; <index> is the page-cache index of <va> in <file>.
 */
static int parse_recall_step(struct parser *ps, struct line *l, char **tok)
{
	char of[NAME_LEN], fname[NAME_LEN];
	int i;

	if (parse_name(ps, tok[0], "label", l->name) ||
	    parse_name(ps, tok[1], "label", of) ||
	    parse_u64(ps, tok[2], "addr", &l->addr))
		return -1;
	if (strcmp(tok[3], "anon")) {
		if (parse_name(ps, tok[3], "file", fname))
			return -1;
		l->file = file_index(ps->s, fname);
		if (l->file < 0)
			return perr(ps, "recall: unknown file '%s'", fname);
	}
	if (parse_u64(ps, tok[4], "index", &l->len))
		return -1;
	for (i = 0; i < nr_remembered; i++)
		if (!strcmp(remembered[i].label, of) &&
		    remembered[i].va == l->addr)
			break;
	if (i == nr_remembered) {
		if (nr_remembered >= MAX_REMEMBERED)
			return perr(ps, "more than %d recalled pages",
				    MAX_REMEMBERED);
		copy_name(remembered[i].label, of);
		remembered[i].va = l->addr;
		nr_remembered++;
	}
	l->arg = (uint64_t)i;
	return 0;
}

static int parse_mmap(struct parser *ps, struct line *l, char **tok)
{
	static const char *const sharing[] = { "private", "shared", NULL };
	char fname[NAME_LEN];
	int sh;

	if (parse_range(ps, l, tok))
		return -1;
	if (!strcmp(tok[3], "anon")) {
		l->file = -1;
	} else {
		if (parse_name(ps, tok[3], "file", fname))
			return -1;
		l->file = file_index(ps->s, fname);
		if (l->file < 0)
			return perr(ps, "unknown file '%s'", fname);
	}
	if (parse_u64(ps, tok[4], "file_offset", &l->arg))
		return -1;
	sh = parse_word(ps, tok[5], "sharing", sharing);
	if (sh < 0 || parse_prot(ps, tok[6], &l->prot))
		return -1;
	l->flags = sh ? MAP_SHARED : MAP_PRIVATE;
	if (l->file < 0)
		l->flags |= MAP_ANONYMOUS;
	return 0;
}

static int parse_step(struct parser *ps, struct line *l, char **tok,
		      int ntok)
{
	static const char *const advices[] = {
		"hugepage", "nohugepage", "dontneed", "cold", "pageout", NULL,
	};
	static const int advice_vals[] = {
		MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_DONTNEED, MADV_COLD,
		MADV_PAGEOUT,
	};
	static const char *const rw[] = { "read", "write", NULL };
	uint64_t n;
	int i;

	if (ntok < 3)
		return perr(ps, "step: expected 'step <n> <op> ...'");
	if (parse_u64(ps, tok[1], "step number", &n))
		return -1;
	l->step = n;
	for (i = 0; i < NR_OPS; i++)
		if (!strcmp(tok[2], op_desc[i].name))
			break;
	if (i == NR_OPS)
		return perr(ps, "unknown op '%s'", tok[2]);
	l->op = i;
	if (ntok != op_desc[i].ntok)
		return perr(ps, "%s: expected %d arguments, got %d",
			    op_desc[i].name, op_desc[i].ntok - 3, ntok - 3);
	tok += 3;
	l->file = -1;

	switch (l->op) {
	case OP_SPAWN:
		return parse_name(ps, tok[0], "process", l->proc) ||
		       add_proc(ps, l->proc);
	case OP_FORK:
		return parse_name(ps, tok[0], "process", l->proc) ||
		       need_proc(ps, l->proc) ||
		       parse_name(ps, tok[1], "child", l->name) ||
		       add_proc(ps, l->name);
	case OP_EXIT:
		if (parse_name(ps, tok[0], "process", l->proc) ||
		    need_proc(ps, l->proc))
			return -1;
		del_proc(ps, l->proc);
		return 0;
	case OP_FILE:
		return parse_file_step(ps, l, tok);
	case OP_MMAP:
		return parse_mmap(ps, l, tok);
	case OP_MUNMAP:
	case OP_SPLIT:
		return parse_range(ps, l, tok);
	case OP_MREMAP:
		return parse_range(ps, l, tok) ||
		       parse_u64(ps, tok[3], "new_addr", &l->arg);
	case OP_MPROTECT:
		return parse_range(ps, l, tok) ||
		       parse_prot(ps, tok[3], &l->prot);
	case OP_MADVISE:
		if (parse_range(ps, l, tok))
			return -1;
		i = parse_word(ps, tok[3], "advice", advices);
		if (i < 0)
			return -1;
		l->advice = advice_vals[i];
		return 0;
	case OP_TOUCH:
		if (parse_range(ps, l, tok))
			return -1;
		i = parse_word(ps, tok[3], "touch", rw);
		if (i < 0)
			return -1;
		l->write = i;
		return 0;
	case OP_PUNCH:
		if (parse_name(ps, tok[0], "file", l->name))
			return -1;
		l->file = file_index(ps->s, l->name);
		if (l->file < 0)
			return perr(ps, "unknown file '%s'", l->name);
		return parse_u64(ps, tok[1], "offset", &l->addr) ||
		       parse_u64(ps, tok[2], "length", &l->len);
	case OP_DROP_CACHES:
		return 0;
	case OP_PROBE:
		if (parse_name(ps, tok[0], "process", l->proc) ||
		    need_proc(ps, l->proc) ||
		    parse_name(ps, tok[1], "label", l->name))
			return -1;
		return parse_u64(ps, tok[2], "addr", &l->addr) ||
		       parse_u64(ps, tok[3], "length", &l->len);
	case OP_OPEN:
		return parse_open_step(ps, l, tok);
	case OP_RECALL:
		return parse_recall_step(ps, l, tok);
	case NR_OPS:
		break;
	}
	return perr(ps, "unknown op");
}

/* One line of the script (newline stripped); 1 if it is empty. */
static int parse_line(struct parser *ps, char *text, struct line *l)
{
	char *tok[MAX_TOKENS + 1];
	uint64_t size;
	int ntok = 0;
	char *p = text;

	if (*text == '\0')
		return 1;
	for (;;) {
		char *sp = strchr(p, ' ');

		if (ntok == MAX_TOKENS)
			return perr(ps, "too many tokens");
		tok[ntok++] = p;
		if (!sp)
			break;
		*sp = '\0';
		p = sp + 1;
	}
	for (int i = 0; i < ntok; i++)
		if (*tok[i] == '\0')
			return perr(ps, "empty token (tokens are separated "
				    "by one space)");

	memset(l, 0, sizeof(*l));
	l->lineno = ps->lineno;
	l->file = -1;
	if (ps->seen_end)
		return perr(ps, "line after 'end'");
	if (!strcmp(tok[0], "scenario")) {
		if (ps->seen_scenario)
			return perr(ps, "second 'scenario' line");
		if (ntok != 2)
			return perr(ps, "scenario: expected 'scenario <name>'");
		ps->s->name = strdup(tok[1]);
		ps->seen_scenario = 1;
		l->kind = L_SCENARIO;
		return 0;
	}
	if (!ps->seen_scenario)
		return perr(ps, "expected 'scenario <name>' first");
	if (!strcmp(tok[0], "end")) {
		if (ntok != 1)
			return perr(ps, "end: takes no arguments");
		ps->seen_end = 1;
		l->kind = L_END;
		return 0;
	}
	if (!strcmp(tok[0], "sysfs")) {
		if (ntok != 3)
			return perr(ps, "sysfs: expected 'sysfs <path> "
				    "<value>'");
		if (tok[1][0] != '/')
			return perr(ps, "sysfs: path must be absolute");
		l->kind = L_SYSFS;
		l->path = strdup(tok[1]);
		l->value = strdup(tok[2]);
		return 0;
	}
	if (!strcmp(tok[0], "mount")) {
		if (ntok != 4)
			return perr(ps, "mount: expected 'mount <path> <size> "
				    "<huge>'");
		if (tok[1][0] != '/')
			return perr(ps, "mount: path must be absolute");
		if (parse_u64(ps, tok[2], "size", &size))
			return -1;
		l->kind = L_MOUNT;
		l->path = strdup(tok[1]);
		l->value = strdup(tok[2]);
		l->huge = strdup(tok[3]);
		return 0;
	}
	if (!strcmp(tok[0], "step")) {
		l->kind = L_STEP;
		return parse_step(ps, l, tok, ntok) ? -1 : 0;
	}
	return perr(ps, "unknown line '%s'", tok[0]);
}

/* Parse the whole script; -1 with ps->err and ps->lineno on error. */
static int parse_script(struct parser *ps, FILE *f)
{
	struct script *s = ps->s;
	size_t cap = 0, bufsize = 0;
	char *buf = NULL;
	ssize_t n;
	int r, ret = 0;

	copy_name(ps->procs[0], "main");
	ps->nprocs = 1;
	ps->lineno = 0;
	while ((n = getline(&buf, &bufsize, f)) >= 0) {
		ps->lineno++;
		if (n > 0 && buf[n - 1] == '\n')
			buf[--n] = '\0';
		if (strlen(buf) != (size_t)n) {
			ret = perr(ps, "NUL byte in line");
			goto out;
		}
		if (s->nlines == cap) {
			struct line *nl;

			cap = cap ? cap * 2 : 64;
			nl = realloc(s->lines, cap * sizeof(*nl));
			if (!nl) {
				ret = perr(ps, "out of memory");
				goto out;
			}
			s->lines = nl;
		}
		r = parse_line(ps, buf, &s->lines[s->nlines]);
		if (r < 0) {
			ret = -1;
			goto out;
		}
		if (r == 0)
			s->nlines++;
	}
	if (ferror(f)) {
		ret = perr(ps, "cannot read script: %s", strerror(errno));
		goto out;
	}
	ps->lineno++;
	if (!ps->seen_scenario)
		ret = perr(ps, "no 'scenario' line");
	else if (!ps->seen_end)
		ret = perr(ps, "missing 'end'");
out:
	free(buf);
	return ret;
}

/* ------------------------------------------------------------------ */
/* Worker                                                              */
/* ------------------------------------------------------------------ */

static int wchan = -1;			/* our command channel */
static char wpkt[PKT_MAX];		/* struct reply + record text */
static size_t wlen;			/* record text in wpkt */

static void wsend(const void *buf, size_t len)
{
	ssize_t n;

	do {
		n = send(wchan, buf, len, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n != (ssize_t)len)
		_exit(1);	/* the coordinator is gone */
}

static void wflush(void)
{
	struct reply r = { .kind = R_DATA };

	if (!wlen)
		return;
	memcpy(wpkt, &r, sizeof(r));
	wsend(wpkt, sizeof(r) + wlen);
	wlen = 0;
}

static void wprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Append one record line (fmt includes the newline) to the reply. */
static void wprintf(const char *fmt, ...)
{
	size_t room;
	va_list ap;
	int n;

	if (sizeof(wpkt) - sizeof(struct reply) - wlen < PKT_LINE_RESERVE)
		wflush();
	room = sizeof(wpkt) - sizeof(struct reply) - wlen;
	va_start(ap, fmt);
	n = vsnprintf(wpkt + sizeof(struct reply) + wlen, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		wlen += (size_t)n < room ? (size_t)n : room - 1;
}

static void wdone(int err, int64_t val)
{
	struct reply r = { .kind = R_DONE, .err = err, .val = val };

	wflush();
	wsend(&r, sizeof(r));
}

/*
 * touch: a fault on a PROT_NONE, read-only or unmapped page must not kill
 * the worker.  The SIGSEGV/SIGBUS handler jumps back out of the loop while
 * a touch is armed.  SIGSEGV is reported as EFAULT, SIGBUS (e.g. a file page
 * beyond EOF, a hwpoisoned page) as EIO.  Outside a touch the handler
 * restores the default action and returns, so the fault kills the worker
 * like any other crash and the coordinator reports the process lost.
 */
static sigjmp_buf touch_env;
static volatile sig_atomic_t touch_armed;
static volatile sig_atomic_t touch_sig;

static void fault_handler(int sig)
{
	struct sigaction sa;

	if (touch_armed) {
		touch_armed = 0;
		touch_sig = sig;
		siglongjmp(touch_env, 1);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigaction(sig, &sa, NULL);
}

static __attribute__((noinline)) void touch_pages(uint64_t addr,
						  uint64_t len, int write)
{
	uint64_t off;

	for (off = 0; off < len; off += PG) {
		volatile char *p = (volatile char *)(uintptr_t)(addr + off);

		if (write)
			*p = 0x5a;
		else
			(void)*p;
	}
}

static int do_touch(const struct cmd *c)
{
	if ((c->addr | c->len) & (PG - 1))
		return EINVAL;
	if (sigsetjmp(touch_env, 1))
		return touch_sig == SIGBUS ? EIO : EFAULT;
	touch_armed = 1;
	touch_pages(c->addr, c->len, c->arg1);
	touch_armed = 0;
	return 0;
}

/* probe: a window of /proc/kpageflags or /proc/kpagecount entries. */
struct pfnwin {
	int fd;
	uint64_t start;
	size_t n;
	size_t span;		/* entries the next read asks for */
	uint64_t v[PFN_WIN];
};

/*
 * Entry for pfn; reads a window of entries starting at pfn (or ending at
 * it, when walking backwards) on a miss, up to PFN_WIN of them.  0, or -1
 * if the file is not readable or has no entry for pfn.
 */
static int pfnwin_get(struct pfnwin *w, uint64_t pfn, int backward,
		      uint64_t *out)
{
	uint64_t start;
	ssize_t n;

	if (w->fd < 0)
		return -1;
	if (pfn < w->start || pfn - w->start >= w->n) {
		/*
		 * The kernel computes every entry it is asked for: a walk
		 * through a large folio reads further and further ahead, a
		 * jump (small folios scattered over memory) reads a little.
		 */
		if (w->n && (backward ? pfn + 1 == w->start :
			     pfn == w->start + w->n))
			w->span = w->span * 2 < PFN_WIN ? w->span * 2 : PFN_WIN;
		else
			w->span = PFN_SPAN_MIN;
		start = pfn;
		if (backward)
			start = pfn >= w->span - 1 ? pfn - (w->span - 1) : 0;
		n = pread_full(w->fd, w->v, w->span * 8, start * 8);
		w->start = start;
		w->n = n > 0 ? (size_t)n / 8 : 0;
		if (pfn - start >= w->n)
			return -1;
	}
	*out = w->v[pfn - w->start];
	return 0;
}

#define AUDIT "/sys/kernel/debug/folio_mapcount/audit"
#define RMAP_STATS "/sys/kernel/debug/folio_mapcount/rmap_stats"
#define AUDIT_MAX 4096		/* folios audited per probe, at most */

/*
 * Consecutive pages that differ only in their address and PFN (the same
 * folio, counts and flags, or all absent) go out as one @PAGES record: a
 * 2 MiB folio is two records, not 512 lines through an emulated UART.  The
 * PFN goes up by one per page (step 1) or stays (step 0: absent pages, the
 * zero page mapped again and again).
 */
struct page_run {
	uint64_t va, pme, pfn, n;
	int has_pfn;
	int step;		/* 0 or 1; -1 while the run is one present page */
	char fields[7][24];	/* kpagecount, kpageflags, head, order, T, E, W */
};

struct probe_ctx {
	struct page_run run;
	struct pfnwin count;
	struct pfnwin flags;
	int mc_fd;		/* folio_mapcount/kpagemc of the kernel series, or -1 */
	uint64_t audited[AUDIT_MAX];	/* head PFNs audited in this probe */
	unsigned int nr_audited;
	int have_folio;		/* last folio found: */
	uint64_t folio_head;
	uint64_t folio_nr;
};

static int ilog2_exact(uint64_t n)
{
	int order = 0;

	if (!n || (n & (n - 1)))
		return -1;
	while (n >>= 1)
		order++;
	return order;
}

/*
 * head_pfn and order of the folio holding pfn (its kpageflags: fl), see
 * WORKLOAD.md.  A tail walks back to its head; the order is log2 of the head
 * plus the following tails.  The last folio is cached, so walking a 512-page
 * THP costs two window reads, not 512 walks.  -1 if the walk fails (a folio
 * changing under us, unreadable kpageflags).
 */
static int find_folio(struct probe_ctx *pc, uint64_t pfn, uint64_t fl,
		      uint64_t *head, int *order)
{
	uint64_t h, f, nr, i;

	if (!(fl & (KPF_COMPOUND_HEAD | KPF_COMPOUND_TAIL))) {
		*head = pfn;
		*order = 0;
		return 0;
	}
	if (pc->have_folio && pfn >= pc->folio_head &&
	    pfn - pc->folio_head < pc->folio_nr &&
	    (pfn == pc->folio_head || !(fl & KPF_COMPOUND_HEAD))) {
		h = pc->folio_head;
		nr = pc->folio_nr;
		goto found;
	}
	h = pfn;
	if (!(fl & KPF_COMPOUND_HEAD)) {
		for (i = 1;; i++) {
			if (i > FOLIO_MAX || i > pfn)
				return -1;
			if (pfnwin_get(&pc->flags, pfn - i, 1, &f))
				return -1;
			if (f & KPF_COMPOUND_HEAD) {
				h = pfn - i;
				break;
			}
			if (!(f & KPF_COMPOUND_TAIL))
				return -1;
		}
	}
	for (nr = 1; nr < FOLIO_MAX; nr++) {
		if (pfnwin_get(&pc->flags, h + nr, 0, &f))
			break;
		if (!(f & KPF_COMPOUND_TAIL) || (f & KPF_COMPOUND_HEAD))
			break;
	}
	if (pfn - h >= nr)
		return -1;
	pc->have_folio = 1;
	pc->folio_head = h;
	pc->folio_nr = nr;
found:
	*head = h;
	*order = ilog2_exact(nr);
	return 0;
}

/*
 * The kernel series' per-PFN record (CONFIG_FOLIO_MAPCOUNT_DEBUG): 64 bytes
 * at pfn * 64; flags bit 0 says the folio fields are valid.  Gives the
 * folio's total (T), entire (E) and per-(VMA, page table) (W, -1 where the
 * kernel does not keep it) mapcounts, which /proc cannot show.
 */
#define KPAGEMC "/sys/kernel/debug/folio_mapcount/kpagemc"
#define KPAGEMC_SIZE 64

static void fmt_mapcounts(struct probe_ctx *pc, uint64_t pfn, char *total,
			  char *entire, char *pt, size_t size)
{
	unsigned char rec[KPAGEMC_SIZE];
	uint32_t flags;
	int32_t v[3];

	if (pc->mc_fd < 0 ||
	    pread(pc->mc_fd, rec, sizeof(rec), (off_t)(pfn * KPAGEMC_SIZE)) !=
	    (ssize_t)sizeof(rec))
		return;
	memcpy(&flags, rec + 20, sizeof(flags));
	if (!(flags & 1))
		return;
	memcpy(v, rec + 28, sizeof(v));
	snprintf(total, size, "%" PRId32, v[0]);
	snprintf(entire, size, "%" PRId32, v[1]);
	if (v[2] >= 0)
		snprintf(pt, size, "%" PRId32, v[2]);
}

/*
 * The series' audit walks a folio's rmap and counts the (VMA, page table)
 * tuples mapping it (W) and the VMAs (V): ground truth for the model.  One
 * audit per folio per probe; the other processes are idle while a probe
 * runs, so nothing maps or unmaps behind the walk.
 */

static void emit_audit(uint64_t head)
{
	char buf[256], *tuples, *vmas, *status;
	ssize_t n;
	int fd;

	fd = open(AUDIT, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", head);
	n = write(fd, buf, (size_t)n);
	close(fd);
	if (n < 0)
		return;
	fd = open(AUDIT, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	tuples = strstr(buf, "tuples=");
	vmas = strstr(buf, "vmas=");
	status = strstr(buf, "status=");
	if (!tuples || !vmas || !status)
		return;
	wprintf("@AUDIT %" PRIu64 " %ld %ld %.*s\n", head,
		strtol(tuples + 7, NULL, 10), strtol(vmas + 5, NULL, 10),
		(int)strcspn(status + 7, " \n"), status + 7);
}

static void note_audit(struct probe_ctx *pc, uint64_t head)
{
	/* a folio's pages come together: comparing with the last is enough */
	if (pc->nr_audited && pc->audited[pc->nr_audited - 1] == head)
		return;
	if (pc->nr_audited < AUDIT_MAX)
		pc->audited[pc->nr_audited++] = head;
}

static void run_flush(struct page_run *r)
{
	char (*f)[24] = r->fields, pfn[24] = "-";

	if (r->has_pfn)
		snprintf(pfn, sizeof(pfn), "%" PRIu64, r->pfn);
	if (r->n == 1)
		wprintf("@PAGE %" PRIx64 " %s %" PRIx64
			" %s %s %s %s %s %s %s\n", r->va, pfn, r->pme,
			f[0], f[1], strcmp(f[2], "=") ? f[2] : pfn, f[3],
			f[4], f[5], f[6]);
	else if (r->n > 1)
		wprintf("@PAGES %" PRIx64 " %" PRIu64 " %d %s %" PRIx64
			" %s %s %s %s %s %s %s\n", r->va, r->n, r->step, pfn,
			r->pme, f[0], f[1], f[2], f[3], f[4], f[5], f[6]);
	r->n = 0;
}

static int run_continues(const struct page_run *r, uint64_t va, uint64_t pme,
			 int has_pfn, uint64_t pfn)
{
	int step;

	if (!r->n || va != r->va + r->n * PG || has_pfn != r->has_pfn)
		return -1;
	if (!has_pfn)
		return pme == r->pme ? 0 : -1;
	for (step = 0; step <= 1; step++)
		if ((r->step < 0 || r->step == step) &&
		    pfn == r->pfn + r->n * step && pme == r->pme + r->n * step)
			return step;
	return -1;
}

static void run_add(struct probe_ctx *pc, uint64_t va, uint64_t pme,
		    int has_pfn, uint64_t pfn, const char *const fields[7])
{
	struct page_run *r = &pc->run;
	const char *head = fields[2];
	char pfn_s[24];
	int step, i;

	/* small folios, each its own head: "=" keeps a run of them one record */
	snprintf(pfn_s, sizeof(pfn_s), "%" PRIu64, pfn);
	if (has_pfn && !strcmp(head, pfn_s))
		head = "=";
	step = run_continues(r, va, pme, has_pfn, pfn);
	for (i = 0; step >= 0 && i < 7; i++)
		if (strcmp(i == 2 ? head : fields[i], r->fields[i]))
			step = -1;
	if (step >= 0) {
		r->step = step;
		r->n++;
		return;
	}
	run_flush(r);
	r->va = va;
	r->pme = pme;
	r->pfn = pfn;
	r->has_pfn = has_pfn;
	r->n = 1;
	r->step = has_pfn ? -1 : 0;
	for (i = 0; i < 7; i++)
		snprintf(r->fields[i], sizeof(r->fields[i]), "%s",
			 i == 2 ? head : fields[i]);
}

static void emit_page(struct probe_ctx *pc, uint64_t va, uint64_t pme)
{
	char pfn_s[24] = "-", count_s[24] = "-", flags_s[24] = "-";
	char head_s[24] = "-", order_s[16] = "-";
	char total_s[16] = "-", entire_s[16] = "-", pt_s[16] = "-";
	uint64_t pfn = pme & PM_PFN_MASK, count, flags, head;
	int order;

	/* pfn and head_pfn are numbers, not addresses: decimal */
	if ((pme & PM_PRESENT) && pfn) {
		snprintf(pfn_s, sizeof(pfn_s), "%" PRIu64, pfn);
		if (!pfnwin_get(&pc->count, pfn, 0, &count))
			snprintf(count_s, sizeof(count_s), "%" PRIu64, count);
		if (!pfnwin_get(&pc->flags, pfn, 0, &flags)) {
			snprintf(flags_s, sizeof(flags_s), "%" PRIx64, flags);
			if (!find_folio(pc, pfn, flags, &head, &order)) {
				snprintf(head_s, sizeof(head_s), "%" PRIu64,
					 head);
				if (order >= 0)
					snprintf(order_s, sizeof(order_s),
						 "%d", order);
			}
		}
		fmt_mapcounts(pc, pfn, total_s, entire_s, pt_s,
			      sizeof(total_s));
		if (total_s[0] != '-' && strcmp(head_s, "-"))
			note_audit(pc, strtoull(head_s, NULL, 10));
	}
	run_add(pc, va, pme, (pme & PM_PRESENT) && pfn, pfn,
		(const char *const[7]){ count_s, flags_s, head_s, order_s,
		total_s, entire_s, pt_s });
}

struct vma_info {
	uint64_t start, end;
	/* kB, -1: absent */
	long long rss, anon_huge, shmem_pmd, file_pmd;
};

static void fmt_kb(char *buf, size_t size, long long v)
{
	if (v < 0)
		snprintf(buf, size, "-");
	else
		snprintf(buf, size, "%lld", v);
}

static void emit_vma(const struct vma_info *v, uint64_t lo, uint64_t hi)
{
	char a[24], b[24], c[24], d[24];

	if (!(v->start < hi && v->end > lo))
		return;
	fmt_kb(a, sizeof(a), v->rss);
	fmt_kb(b, sizeof(b), v->anon_huge);
	fmt_kb(c, sizeof(c), v->shmem_pmd);
	fmt_kb(d, sizeof(d), v->file_pmd);
	wprintf("@VMA %" PRIx64 " %" PRIx64 " %s %s %s %s\n",
		v->start, v->end, a, b, c, d);
}

static int smaps_field(const char *line, const char *name, long long *out)
{
	size_t n = strlen(name);

	if (strncmp(line, name, n))
		return 0;
	*out = strtoll(line + n, NULL, 10);
	return 1;
}

/* @VMA lines for every VMA intersecting [lo, hi), from /proc/self/smaps. */
static int emit_vmas(uint64_t lo, uint64_t hi)
{
	struct vma_info v;
	char *text, *line, *nl;
	unsigned long long s, e;
	int have = 0, err = 0;

	text = read_text("/proc/self/smaps", &err);
	if (!text)
		return err;
	for (line = text; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		if (!nl)
			nl = line + strlen(line) - 1;
		if ((isdigit((unsigned char)line[0]) ||
		     (line[0] >= 'a' && line[0] <= 'f')) &&
		    sscanf(line, "%llx-%llx ", &s, &e) == 2) {
			if (have)
				emit_vma(&v, lo, hi);
			have = 1;
			v.start = s;
			v.end = e;
			v.rss = v.anon_huge = v.shmem_pmd = v.file_pmd = -1;
			continue;
		}
		if (!have)
			continue;
		if (smaps_field(line, "Rss:", &v.rss) ||
		    smaps_field(line, "AnonHugePages:", &v.anon_huge) ||
		    smaps_field(line, "ShmemPmdMapped:", &v.shmem_pmd))
			continue;
		smaps_field(line, "FilePmdMapped:", &v.file_pmd);
	}
	if (have)
		emit_vma(&v, lo, hi);
	free(text);
	return 0;
}

/* The mapped-page counters the accounting checks compare (global, in pages). */
static int accounted_counter(const char *name)
{
	return !strcmp(name, "nr_anon_pages") || !strcmp(name, "nr_mapped") ||
	       !strcmp(name, "nr_shmem") || !strcmp(name, "nr_file_pages");
}

/*
 * Fold every CPU's pending vmstat deltas into the global counters first, so that they
 * are exact: without it a counter may lag by up to the per-CPU threshold. Best effort:
 * without CONFIG_SMP or CONFIG_PROC_SYSCTL the file is missing and the counters lag.
 */
static void refresh_vmstat(void)
{
	write_file("/proc/sys/vm/stat_refresh", "1");
}

/* Sum of a kB field over a smaps-like file ("Anonymous:", "Rss:"), or -1. */
static long long smaps_total(const char *path, const char *name)
{
	char *text, *line, *nl;
	long long total = -1, v;
	int err;

	text = read_text(path, &err);
	for (line = text; line && *line; line = nl + 1) {
		nl = strchr(line, '\n');
		if (!nl)
			break;
		*nl = '\0';
		if (smaps_field(line, name, &v))
			total = (total < 0 ? 0 : total) + v;
	}
	free(text);
	return total;
}

/*
 * @COUNTS: the probing process's RSS counters (the kernel's per-mm counts, which may lag
 * its page tables by a few faults: SPLIT_RSS_COUNTING) and the global mapped-page counters,
 * folded first so they are exact.
 */
static void emit_counts(void)
{
	static const char *const status_fields[] = { "RssAnon:", "RssFile:", "RssShmem:" };
	static const char *const status_keys[] = { "rss_anon_kb", "rss_file_kb", "rss_shmem_kb" };
	char *text, *line, *nl, *out = NULL;
	size_t outlen = 0, k;
	long long v;
	FILE *m;
	int err;

	m = open_memstream(&out, &outlen);
	if (!m)
		return;
	fputs("@COUNTS", m);
	text = read_text("/proc/self/status", &err);
	for (line = text; line && *line; line = nl + 1) {
		nl = strchr(line, '\n');
		if (!nl)
			break;
		*nl = '\0';
		for (k = 0; k < 3; k++)
			if (smaps_field(line, status_fields[k], &v))
				fprintf(m, " %s=%lld", status_keys[k], v);
	}
	free(text);
	refresh_vmstat();
	text = read_text("/proc/vmstat", &err);
	for (line = text; line && *line; line = nl + 1) {
		char *sp;

		nl = strchr(line, '\n');
		if (!nl)
			break;
		*nl = '\0';
		sp = strchr(line, ' ');
		if (!sp)
			continue;
		*sp = '\0';
		if (accounted_counter(line))
			fprintf(m, " %s=%s", line, sp + 1);
	}
	free(text);
	fclose(m);
	wprintf("%s\n", out);
	free(out);
}

static int do_probe(const struct cmd *c)
{
	struct probe_ctx *pc;
	uint64_t *pm = NULL, npages, done, n, i;
	int pmfd, err = 0;

	if ((c->addr | c->len) & (PG - 1) || c->addr + c->len < c->addr)
		return EINVAL;
	npages = c->len / PG;
	pc = calloc(1, sizeof(*pc));
	pm = malloc(PM_CHUNK * sizeof(*pm));
	if (!pc || !pm) {
		free(pc);
		free(pm);
		return ENOMEM;
	}
	pmfd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pmfd < 0) {
		err = errno;
		goto out;
	}
	/* Not readable (no CAP_SYS_ADMIN, no CONFIG_PROC_PAGE_MONITOR): '-' */
	pc->count.fd = open("/proc/kpagecount", O_RDONLY | O_CLOEXEC);
	pc->flags.fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	pc->mc_fd = open(KPAGEMC, O_RDONLY | O_CLOEXEC);

	wprintf("@PROBE %s %s %d %" PRIx64 " %" PRIu64 "\n",
		c->label, c->proc, (int)getpid(), c->addr, npages);
	for (done = 0; done < npages; done += n) {
		ssize_t r;

		n = npages - done < PM_CHUNK ? npages - done : PM_CHUNK;
		r = pread_full(pmfd, pm, n * 8, (c->addr / PG + done) * 8);
		if (r < 0 || (uint64_t)r != n * 8) {
			err = r < 0 ? errno : EIO;
			break;
		}
		for (i = 0; i < n; i++)
			emit_page(pc, c->addr + (done + i) * PG, pm[i]);
	}
	run_flush(&pc->run);
	if (pc->mc_fd >= 0) {
		unsigned int k;

		for (k = 0; k < pc->nr_audited; k++)
			emit_audit(pc->audited[k]);
	}
	if (!err)
		err = emit_vmas(c->addr, c->addr + c->len);
	emit_counts();
	wprintf("@ENDPROBE %s\n", c->label);

	if (pc->count.fd >= 0)
		close(pc->count.fd);
	if (pc->flags.fd >= 0)
		close(pc->flags.fd);
	if (pc->mc_fd >= 0)
		close(pc->mc_fd);
	close(pmfd);
out:
	free(pm);
	free(pc);
	return err;
}

static int do_mmap(const struct cmd *c, int fd)
{
	void *want = (void *)(uintptr_t)c->addr, *p;

	if (!(c->arg2 & MAP_ANONYMOUS) && fd < 0)
		return EBADF;
	p = mmap(want, c->len, c->arg1, c->arg2 | MAP_FIXED_NOREPLACE,
		 (c->arg2 & MAP_ANONYMOUS) ? -1 : fd, (off_t)c->arg);
	if (p == MAP_FAILED)
		return errno;
	if (p != want) {
		/* a kernel without MAP_FIXED_NOREPLACE took it as a hint */
		munmap(p, c->len);
		return EEXIST;
	}
	return 0;
}

static int sys_result(int ret)
{
	return ret ? errno : 0;
}

/* Serve commands on chan until told to exit; never returns. */
static __attribute__((noreturn)) void worker_main(int chan)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct sigaction sa;
	struct cmd c;
	pid_t pid;

	wchan = chan;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fault_handler;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	/* fork children are reaped by the kernel, never left as zombies */
	sa.sa_handler = SIG_IGN;
	sigaction(SIGCHLD, &sa, NULL);

	for (;;) {
		struct iovec iov = { .iov_base = &c, .iov_len = sizeof(c) };
		struct msghdr msg = {
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = ctl.buf,
			.msg_controllen = sizeof(ctl.buf),
		};
		struct cmsghdr *cm;
		void *a;
		ssize_t n;
		int fd = -1, err = 0;

		n = recvmsg(wchan, &msg, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(0);	/* the coordinator is gone */
		for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm))
			if (cm->cmsg_level == SOL_SOCKET &&
			    cm->cmsg_type == SCM_RIGHTS)
				memcpy(&fd, CMSG_DATA(cm), sizeof(fd));
		if (n != sizeof(c))
			_exit(1);
		a = (void *)(uintptr_t)c.addr;

		switch (c.op) {
		case OP_EXIT:
			_exit(0);
		case OP_FORK:
			if (fd < 0) {
				wdone(EBADF, 0);
				continue;
			}
			pid = fork();
			if (pid == 0) {
				/* child: serve the channel we were given */
				close(wchan);
				wchan = fd;
				continue;
			}
			close(fd);
			if (pid < 0)
				wdone(errno, 0);
			else
				wdone(0, pid);
			continue;
		case OP_MMAP:
			err = do_mmap(&c, fd);
			break;
		case OP_MUNMAP:
			err = sys_result(munmap(a, c.len));
			break;
		case OP_MREMAP:
			if (mremap(a, c.len, c.len, MREMAP_MAYMOVE |
				   MREMAP_FIXED, (void *)(uintptr_t)c.arg) ==
			    MAP_FAILED)
				err = errno;
			break;
		case OP_MPROTECT:
			err = sys_result(mprotect(a, c.len, c.arg1));
			break;
		case OP_MADVISE:
			err = sys_result(madvise(a, c.len, c.arg1));
			break;
		case OP_TOUCH:
			err = do_touch(&c);
			break;
		case OP_PROBE:
			err = do_probe(&c);
			break;
		default:
			err = ENOSYS;
			break;
		}
		if (fd >= 0)
			close(fd);
		wdone(err, 0);
	}
}

/* ------------------------------------------------------------------ */
/* Coordinator                                                         */
/* ------------------------------------------------------------------ */

enum proc_state { P_FREE, P_ALIVE, P_GONE };

struct proc {
	char name[NAME_LEN];
	enum proc_state state;	/* P_GONE: lost or never started */
	pid_t pid;
	int fd;			/* coordinator's end of the channel */
};

static struct proc procs[MAX_PROCS];
static struct script script;
static int out_fd = -1;
static int run_failed;		/* a worker was lost: scenario "err" */

static void out_write(const char *buf, size_t len)
{
	if (write_full(out_fd, buf, len) < 0) {
		fprintf(stderr, "mmwork: cannot write records: %s\n",
			strerror(errno));
		exit(EXIT_FAILURE_RUN);
	}
}

static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One record line; fmt has no newline. */
static void emit(const char *fmt, ...)
{
	char line[4096];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	out_write(line, (size_t)n);
}

/* W counts the series' kernel found wrong itself (CONFIG_FOLIO_PT_MAPCOUNT) */
#define PT_ERRORS "/sys/kernel/debug/folio_pt_mapcount/errors"

/* One @VMSTAT record, without its newline, to m. */
static void write_vmstat(FILE *m, const char *when)
{
	char *text, *line, *nl;
	int err;

	refresh_vmstat();
	fprintf(m, "@VMSTAT %s", when);
	text = read_text("/proc/vmstat", &err);
	for (line = text; line && *line; line = nl + 1) {
		char *sp;

		nl = strchr(line, '\n');
		if (!nl)
			nl = line + strlen(line) - 1;
		else
			*nl = '\0';
		sp = strchr(line, ' ');
		if (!sp)
			continue;
		*sp = '\0';
		if (!strncmp(line, "thp_", 4) ||
		    !strncmp(line, "pgscan_", 7) ||
		    !strncmp(line, "allocstall_", 11) ||
		    !strcmp(line, "nr_anon_transparent_hugepages") ||
		    !strcmp(line, "nr_shmem_hugepages") ||
		    accounted_counter(line))
			fprintf(m, " %s=%s", line, sp + 1);
	}
	free(text);
	/* The series' rmap call counters: "<op>_<level> calls=<n> pages=<n>". */
	text = read_text(RMAP_STATS, &err);
	for (line = text; line && *line; line = nl + 1) {
		unsigned long long calls, pages;
		char name[64];

		nl = strchr(line, '\n');
		if (!nl)
			nl = line + strlen(line) - 1;
		else
			*nl = '\0';
		if (sscanf(line, "%63s calls=%llu pages=%llu", name, &calls,
			   &pages) == 3)
			fprintf(m, " rmap.%s.calls=%llu rmap.%s.pages=%llu",
				name, calls, name, pages);
	}
	/* The interpreter's own pages: what the global counters move by besides the workers. */
	fprintf(m, " self_anon_kb=%lld self_rss_kb=%lld",
		smaps_total("/proc/self/smaps_rollup", "Anonymous:"),
		smaps_total("/proc/self/smaps_rollup", "Rss:"));
	free(text);
	text = read_text(PT_ERRORS, &err);
	if (text)
		fprintf(m, " pt_mapcount_errors=%ld", strtol(text, NULL, 10));
	free(text);
}

static void emit_vmstat(const char *when)
{
	char *out = NULL;
	size_t outlen = 0;
	FILE *m;

	/*
	 * A first record for nothing. It faults in every page of code the
	 * real one runs and grows the heap to what it needs, so nothing the
	 * interpreter maps changes between reading the global counters and
	 * reading its own footprint, and the two agree to the page. (When
	 * only the counters were read first, the code that parses the
	 * series' rmap_stats was faulted in between: 16 pages of text in
	 * the interpreter's Rss at "begin" and not yet in nr_mapped.)
	 */
	m = open_memstream(&out, &outlen);
	if (m) {
		write_vmstat(m, when);
		fclose(m);
		free(out);
		out = NULL;
		outlen = 0;
	}
	m = open_memstream(&out, &outlen);
	if (!m) {
		emit("@VMSTAT %s", when);
		return;
	}
	write_vmstat(m, when);
	fputc('\n', m);
	fclose(m);
	out_write(out, outlen);
	free(out);
}

static void emit_step(const struct line *l, int err)
{
	char buf[16];

	if (!err)
		emit("@STEP %llu %s ok", l->step, op_desc[l->op].name);
	else
		emit("@STEP %llu %s err %d %s", l->step, op_desc[l->op].name,
		     err, errno_name(err, buf, sizeof(buf)));
}

static void emit_setup(const char *path, int err)
{
	char buf[16];

	if (!err)
		emit("@SETUP %s ok", path);
	else
		emit("@SETUP %s err %d %s", path, err,
		     errno_name(err, buf, sizeof(buf)));
}

static struct proc *find_proc(const char *name)
{
	int i;

	for (i = 0; i < MAX_PROCS; i++)
		if (procs[i].state != P_FREE && !strcmp(procs[i].name, name))
			return &procs[i];
	return NULL;
}

/* A free slot named name, in state P_GONE until its worker runs. */
static struct proc *new_proc(const char *name)
{
	int i;

	for (i = 0; i < MAX_PROCS; i++) {
		if (procs[i].state == P_FREE) {
			copy_name(procs[i].name, name);
			procs[i].state = P_GONE;
			procs[i].pid = -1;
			procs[i].fd = -1;
			return &procs[i];
		}
	}
	return NULL;	/* the parser allows at most MAX_PROCS */
}

static int send_cmd(int sock, const struct cmd *c, int fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = { .iov_base = (void *)c, .iov_len = sizeof(*c) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;
	ssize_t n;

	if (fd >= 0) {
		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = sizeof(ctl.buf);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(fd));
	}
	do {
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(*c) ? 0 : -1;
}

/*
 * The worker died: reap it if it is our child (or was reparented to us),
 * say how it ended, and mark it gone.
 */
static void proc_lost(struct proc *p, const struct line *l)
{
	char how[128] = "channel closed";
	int status;

	close(p->fd);
	p->fd = -1;
	if (waitpid(p->pid, &status, 0) == p->pid) {
		if (WIFSIGNALED(status))
			snprintf(how, sizeof(how), "killed by signal %d (%s)",
				 WTERMSIG(status), strsignal(WTERMSIG(status)));
		else if (WIFEXITED(status))
			snprintf(how, sizeof(how), "exited with status %d",
				 WEXITSTATUS(status));
	}
	emit("@ERROR step %llu: process %s (pid %d) lost: %s", l->step,
	     p->name, (int)p->pid, how);
	fprintf(stderr, "mmwork: step %llu: process %s (pid %d) lost: %s\n",
		l->step, p->name, (int)p->pid, how);
	p->state = P_GONE;
	run_failed = 1;
}

/*
 * Note the pages that recall steps will look at again from a probe's @PAGE
 * records ("@PAGE <va> <pfn> <pagemap> <count> <flags> <head> <order> ...")
 * and @PAGES runs ("@PAGES <va> <n> <step> <pfn> <pagemap> <count> <flags>
 * <head> <order> ...": page k has PFN pfn + k * step, head "=" is its own).
 * A worker's data packet holds whole lines.
 */
static void note_pages(const char *buf, size_t len)
{
	char line[PKT_LINE_RESERVE], pfn_s[32], head_s[32], order[16];
	const char *p = buf, *end = buf + len, *nl;
	uint64_t va, npages, step, pfn, head;
	size_t n;
	int i;

	if (!nr_remembered)
		return;
	for (; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			break;
		n = (size_t)(nl - p);
		if (n < 6 || n >= sizeof(line) || memcmp(p, "@PAGE", 5))
			continue;
		memcpy(line, p, n);
		line[n] = '\0';
		npages = 1;
		step = 0;
		if (!strncmp(line, "@PAGE ", 6)) {
			if (sscanf(line, "@PAGE %" SCNx64 " %31s %*s %*s %*s %31s %15s",
				   &va, pfn_s, head_s, order) != 4)
				continue;
		} else if (sscanf(line, "@PAGES %" SCNx64 " %" SCNu64 " %" SCNu64
				  " %31s %*s %*s %*s %31s %15s", &va, &npages,
				  &step, pfn_s, head_s, order) != 6) {
			continue;
		}
		if (!isdigit((unsigned char)pfn_s[0]) ||
		    !isdigit((unsigned char)order[0]) ||
		    (!isdigit((unsigned char)head_s[0]) && strcmp(head_s, "=")))
			continue;
		pfn = strtoull(pfn_s, NULL, 10);
		head = strtoull(head_s, NULL, 10);
		for (i = 0; i < nr_remembered; i++) {
			struct remembered *r = &remembered[i];
			uint64_t k;

			if (r->va < va || r->va >= va + npages * PG ||
			    strcmp(r->label, probing_label))
				continue;
			k = (r->va - va) / PG;
			r->pfn = pfn + k * step;
			r->head = strcmp(head_s, "=") ? head : r->pfn;
			r->order = atoi(order);
			r->have = 1;
		}
	}
}

/*
 * Send c (and fd, if >= 0) to p's worker and copy its records to the output
 * until its reply.  0 with *err and *val set, -1 if the worker is gone.
 */
static int call_worker(struct proc *p, const struct cmd *c, int fd,
		       int *err, int64_t *val)
{
	static char pkt[PKT_MAX];
	struct reply r;
	ssize_t n;

	if (send_cmd(p->fd, c, fd))
		return -1;
	for (;;) {
		n = recv(p->fd, pkt, sizeof(pkt), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < (ssize_t)sizeof(r))
			return -1;	/* EOF, error or garbage */
		memcpy(&r, pkt, sizeof(r));
		if (r.kind == R_DATA) {
			if (probing_label)
				note_pages(pkt + sizeof(r),
					   (size_t)n - sizeof(r));
			out_write(pkt + sizeof(r), (size_t)n - sizeof(r));
		} else if (r.kind == R_DONE) {
			*err = r.err;
			*val = r.val;
			return 0;
		} else {
			return -1;
		}
	}
}

/* Run one worker command for step l; 0, errno or STEP_LOST. */
static int worker_step(const struct line *l, struct cmd *c, int fd,
		       int64_t *val)
{
	struct proc *p = find_proc(l->proc);
	int64_t dummy;
	int err;

	if (!p || p->state != P_ALIVE)
		return ESRCH;
	c->op = l->op;
	copy_name(c->proc, l->proc);
	if (call_worker(p, c, fd, &err, val ? val : &dummy)) {
		proc_lost(p, l);
		return STEP_LOST;
	}
	return err;
}

/* Close what a freshly forked worker must not hold. */
static void close_inherited(void)
{
	int i;

	for (i = 0; i < MAX_PROCS; i++)
		if (procs[i].state == P_ALIVE && procs[i].fd >= 0)
			close(procs[i].fd);
	for (i = 0; i < script.nfiles; i++)
		if (script.files[i].fd >= 0)
			close(script.files[i].fd);
	if (out_fd > 2)
		close(out_fd);
}

/* Fork a new worker from the coordinator into slot p; 0 or errno. */
static int start_worker(struct proc *p)
{
	int sv[2], err;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv))
		return errno;
	pid = fork();
	if (pid < 0) {
		err = errno;
		close(sv[0]);
		close(sv[1]);
		return err;
	}
	if (pid == 0) {
		close(sv[0]);
		close_inherited();
		worker_main(sv[1]);
	}
	close(sv[1]);
	p->pid = pid;
	p->fd = sv[0];
	p->state = P_ALIVE;
	return 0;
}

/* Tell p to exit and wait until its mm is gone; 0, errno or STEP_LOST. */
static int stop_worker(struct proc *p, const struct line *l)
{
	struct cmd c = { .op = OP_EXIT };
	char pkt[64];
	int status;
	ssize_t n;

	if (p->state != P_ALIVE)
		return ESRCH;
	if (send_cmd(p->fd, &c, -1)) {
		if (l) {
			proc_lost(p, l);
			return STEP_LOST;
		}
	} else {
		/* EOF: the kernel closes files only after exit_mm() */
		do {
			n = recv(p->fd, pkt, sizeof(pkt), 0);
		} while (n > 0 || (n < 0 && errno == EINTR));
	}
	close(p->fd);
	/* ECHILD: a fork child, reaped by its parent worker */
	while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
		;
	p->fd = -1;
	p->state = P_FREE;
	return 0;
}

static int step_fork(const struct line *l)
{
	struct proc *parent = find_proc(l->proc), *child;
	struct cmd c = { 0 };
	int sv[2], err;
	int64_t pid;

	child = new_proc(l->name);
	if (!child)
		return ENOMEM;
	if (!parent || parent->state != P_ALIVE)
		return ESRCH;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv))
		return errno;
	err = worker_step(l, &c, sv[1], &pid);
	close(sv[1]);
	if (err) {
		close(sv[0]);
		return err;
	}
	child->pid = (pid_t)pid;
	child->fd = sv[0];
	child->state = P_ALIVE;
	return 0;
}

static int populate_file(int fd, uint64_t size, enum populate how)
{
	size_t chunk = 1 << 20;
	uint64_t off;
	ssize_t n;
	char *buf;

	if (how == POP_NONE)
		return 0;
	if (how == POP_FALLOCATE)
		return fallocate(fd, 0, 0, (off_t)size) ? errno : 0;
	buf = malloc(chunk);
	if (!buf)
		return ENOMEM;
	memset(buf, 0x5a, chunk);
	for (off = 0; off < size; off += (uint64_t)n) {
		size_t len = size - off < chunk ? size - off : chunk;

		n = pwrite(fd, buf, len, (off_t)off);
		if (n < 0 && errno == EINTR) {
			n = 0;
			continue;
		}
		if (n <= 0) {
			int err = n < 0 ? errno : EIO;

			free(buf);
			return err;
		}
	}
	free(buf);
	return 0;
}

static int step_file(const struct line *l)
{
	struct file_def *f = &script.files[l->file];
	int fd, err;

	if (f->kind == F_MEMFD)
		fd = memfd_create(f->name, 0);
	else
		fd = open(f->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
			  0600);
	if (fd < 0)
		return errno;
	err = ftruncate(fd, (off_t)l->arg) ? errno : 0;
	if (!err)
		err = populate_file(fd, l->arg, l->populate);
	if (err) {
		close(fd);
		return err;
	}
	f->fd = fd;
	return 0;
}

static int step_open(const struct line *l)
{
	struct file_def *f = &script.files[l->file];
	int of = script.files[f->of].fd;
	char path[64];
	int fd;

	if (of < 0)
		return EBADF;	/* the file it opens again failed */
	/* A new open file description of the same inode, memfd or tmpfs. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", of);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno;
	f->fd = fd;
	return 0;
}

static int read_u64_at(int fd, uint64_t pfn, uint64_t *v)
{
	return pread_full(fd, v, sizeof(*v), (off_t)(pfn * 8)) == sizeof(*v) ?
	       0 : -1;
}

/*
 * recall: what became of a folio an earlier probe saw.  Reports, for the
 * remembered head PFN, its kpageflags now, the order of the folio it heads
 * now ('-' if it is a tail of another), how many of the remembered folio's
 * PFNs have a mapcount, and for a file folio how many of its page-cache
 * indexes are resident (mincore over a fresh mapping: nothing is faulted).
 */
/*
 * How many of the folio's nr PFNs (from head) are mapped where the probe saw
 * them, at the same addresses, in any of the scenario's live processes (fork
 * children keep the addresses).  kpagecount says whether anything maps a
 * PFN; a page the scenario freed may have been handed out again since (on
 * the one CPU the scenario runs on, the next small allocation takes the page
 * freed last), to the scenario itself at another address or to anything else.
 */
static uint64_t mapped_in_place(const struct remembered *r, uint64_t nr)
{
	uint64_t first_va = r->va - (r->pfn - r->head) * PG, count = 0, i;
	uint64_t *entries = calloc(nr, 8);
	unsigned char *seen = calloc(nr, 1);
	size_t p;

	for (p = 0; entries && seen && p < MAX_PROCS; p++) {
		char path[64];
		ssize_t got;
		int pm;

		if (procs[p].state != P_ALIVE)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)procs[p].pid);
		pm = open(path, O_RDONLY | O_CLOEXEC);
		if (pm < 0)
			continue;
		got = pread(pm, entries, nr * 8, (off_t)(first_va / PG * 8));
		for (i = 0; got > 0 && i < (uint64_t)got / 8; i++)
			if ((entries[i] & PM_PRESENT) &&
			    (entries[i] & PM_PFN_MASK) == r->head + i)
				seen[i] = 1;
		close(pm);
	}
	for (i = 0; seen && i < nr; i++)
		count += seen[i];
	free(entries);
	free(seen);
	return count;
}

static int step_recall(const struct line *l)
{
	struct remembered *r = &remembered[l->arg];
	uint64_t nr, i, fl, f, count, first, mapped = 0, resident = 0;
	int cfd, ffd, err = 0, have_res = 0;
	char now[16] = "-", res[24] = "-";

	if (!r->have) {
		emit("@RECALL %s %s %" PRIx64 " - - - - - - -", l->name,
		     r->label, l->addr);
		return ENOENT;	/* the probe did not see a page there */
	}
	nr = 1ULL << r->order;
	cfd = open("/proc/kpagecount", O_RDONLY | O_CLOEXEC);
	ffd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	if (cfd < 0 || ffd < 0 || read_u64_at(ffd, r->head, &fl)) {
		err = EIO;
		goto out;
	}
	if (!(fl & (KPF_COMPOUND_HEAD | KPF_COMPOUND_TAIL))) {
		snprintf(now, sizeof(now), "0");
	} else if (fl & KPF_COMPOUND_HEAD) {
		for (i = 1; i < FOLIO_MAX; i++)
			if (read_u64_at(ffd, r->head + i, &f) ||
			    !(f & KPF_COMPOUND_TAIL) || (f & KPF_COMPOUND_HEAD))
				break;
		if (ilog2_exact(i) >= 0)
			snprintf(now, sizeof(now), "%d", ilog2_exact(i));
	}
	for (i = 0; i < nr; i++)
		if (!read_u64_at(cfd, r->head + i, &count) && count)
			mapped++;
	first = l->len - (r->pfn - r->head);
	if (l->file >= 0 && script.files[l->file].fd >= 0 && l->len >= r->pfn - r->head) {
		size_t bytes = (size_t)(nr * PG);
		unsigned char *vec = malloc(nr);
		void *m = mmap(NULL, bytes, PROT_READ, MAP_SHARED,
			       script.files[l->file].fd, (off_t)(first * PG));

		if (vec && m != MAP_FAILED && !mincore(m, bytes, vec)) {
			for (i = 0; i < nr; i++)
				resident += vec[i] & 1;
			have_res = 1;
		}
		if (m != MAP_FAILED)
			munmap(m, bytes);
		free(vec);
	}
	if (have_res)
		snprintf(res, sizeof(res), "%" PRIu64, resident);
	emit("@RECALL %s %s %" PRIx64 " %" PRIu64 " %d %s %" PRIx64 " %" PRIu64
	     " %s %" PRIu64, l->name, r->label, l->addr, r->head, r->order, now,
	     fl, mapped, res, mapped_in_place(r, nr));
out:
	if (cfd >= 0)
		close(cfd);
	if (ffd >= 0)
		close(ffd);
	return err;
}

static int step_split(const struct line *l)
{
	struct proc *p = find_proc(l->proc);
	char buf[128];

	if (!p || p->state != P_ALIVE)
		return ESRCH;
	snprintf(buf, sizeof(buf), "%d,0x%" PRIx64 ",0x%" PRIx64,
		 (int)p->pid, l->addr, l->addr + l->len);
	return write_file(SPLIT_PATH, buf);
}

/*
 * Every process of a scenario runs on CPU 0 (workers inherit the mask at
 * fork).  The kernel keeps folios on their way to the LRU lists in per-CPU
 * batches and drains them locally (lru_add_drain() in munmap, madvise,
 * exit...): on one CPU a folio a worker faulted is on the LRU by the time
 * the same or another worker madvises it away, as the model assumes; across
 * two CPUs it may still sit in the other CPU's batch, held by the batch's
 * reference, and MADV_PAGEOUT cannot isolate it, DONTNEED cannot free it.
 */
static void pin_to_one_cpu(void)
{
	cpu_set_t one;

	CPU_ZERO(&one);
	CPU_SET(0, &one);
	sched_setaffinity(0, sizeof(one), &one);
}

/*
 * Drain this CPU's LRU batches: munmap() runs unmap_region(), which starts
 * with lru_add_drain().  Around drop_caches, so that every folio is on the
 * LRU when invalidate_mapping_pages() deactivates it (a folio still in the
 * lru_add batch is skipped) and every unmapped dirty small folio has
 * PG_reclaim once the step ends (deactivate_file_folio() queues small ones
 * in a batch of 15; large ones go at once).
 */
static void drain_lru_batches(void)
{
	void *p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p != MAP_FAILED)
		munmap(p, 4096);
}

static void run_step(const struct line *l)
{
	struct cmd c = { 0 };
	struct proc *p;
	int err, fd;

	switch (l->op) {
	case OP_SPAWN:
		p = new_proc(l->proc);
		err = p ? start_worker(p) : ENOMEM;
		break;
	case OP_FORK:
		err = step_fork(l);
		break;
	case OP_EXIT:
		p = find_proc(l->proc);
		err = p ? stop_worker(p, l) : ESRCH;
		if (p)	/* the name is free again, whatever happened */
			p->state = P_FREE;
		break;
	case OP_FILE:
		err = step_file(l);
		break;
	case OP_MMAP:
		fd = -1;
		if (l->file >= 0) {
			fd = script.files[l->file].fd;
			if (fd < 0) {
				err = EBADF;	/* its file step failed */
				break;
			}
		}
		c.addr = l->addr;
		c.len = l->len;
		c.arg = l->arg;
		c.arg1 = l->prot;
		c.arg2 = l->flags;
		err = worker_step(l, &c, fd, NULL);
		break;
	case OP_MUNMAP:
	case OP_MREMAP:
	case OP_MPROTECT:
	case OP_MADVISE:
	case OP_TOUCH:
	case OP_PROBE:
		c.addr = l->addr;
		c.len = l->len;
		c.arg = l->arg;
		c.arg1 = l->op == OP_MPROTECT ? l->prot :
			 l->op == OP_MADVISE ? l->advice : l->write;
		copy_name(c.label, l->name);
		probing_label = l->op == OP_PROBE ? l->name : NULL;
		err = worker_step(l, &c, -1, NULL);
		probing_label = NULL;
		break;
	case OP_PUNCH:
		fd = script.files[l->file].fd;
		if (fd < 0)
			err = EBADF;
		else
			err = fallocate(fd, FALLOC_FL_PUNCH_HOLE |
					FALLOC_FL_KEEP_SIZE, (off_t)l->addr,
					(off_t)l->len) ? errno : 0;
		break;
	case OP_SPLIT:
		err = step_split(l);
		break;
	case OP_DROP_CACHES:
		drain_lru_batches();
		err = write_file(DROP_CACHES_PATH, "3");
		drain_lru_batches();
		break;
	case OP_OPEN:
		err = step_open(l);
		break;
	case OP_RECALL:
		err = step_recall(l);
		break;
	default:
		err = ENOSYS;
		break;
	}
	emit_step(l, err == STEP_LOST ? ECHILD : err);
}

static void run_setup(const struct line *l)
{
	char opts[256];
	int err;

	if (l->kind == L_SYSFS) {
		emit_setup(l->path, write_file(l->path, l->value));
		return;
	}
	err = mkdir_p(l->path);
	if (!err) {
		snprintf(opts, sizeof(opts), "size=%s,huge=%s", l->value,
			 l->huge);
		if (mount("tmpfs", l->path, "tmpfs", 0, opts))
			err = errno;
	}
	emit_setup(l->path, err);
}

static int run_script(void)
{
	struct proc *mainp, *calib;
	size_t i;
	int err;

	emit("@SCENARIO %s", script.name);
	/* orphaned fork children come back to us to be reaped */
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	/*
	 * One worker started and stopped before the first snapshot: whatever the first
	 * fork and exit leave behind in the interpreter is then in "begin" already, and
	 * "exit" differs from it only by what the scenario's own workers left.
	 */
	calib = new_proc("calibrate");
	if (!start_worker(calib))
		stop_worker(calib, NULL);
	emit_vmstat("begin");

	mainp = new_proc("main");
	err = start_worker(mainp);
	if (err) {
		emit("@ERROR cannot start process main: %s", strerror(err));
		emit("@ENDSCENARIO %s err", script.name);
		return EXIT_FAILURE_RUN;
	}

	for (i = 0; i < script.nlines; i++) {
		const struct line *l = &script.lines[i];

		switch (l->kind) {
		case L_SYSFS:
		case L_MOUNT:
			run_setup(l);
			break;
		case L_STEP:
			run_step(l);
			break;
		case L_SCENARIO:
		case L_END:
			break;
		}
	}

	/* counters as the steps left them, before the processes exit */
	emit_vmstat("end");
	for (i = 0; i < MAX_PROCS; i++)
		if (procs[i].state == P_ALIVE)
			stop_worker(&procs[i], NULL);
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	/* every worker gone: their mappings must have left the counters as they found them */
	emit_vmstat("exit");
	/*
	 * Leave nothing behind for the next scenario of the boot: its files
	 * would stay in the page cache (and on tmpfs's shrink list, which a
	 * later drop_caches would act on) where no model of that scenario
	 * can see them.
	 */
	for (i = 0; i < (size_t)script.nfiles; i++) {
		if (script.files[i].fd >= 0)
			close(script.files[i].fd);
		script.files[i].fd = -1;
	}
	for (i = script.nlines; i-- > 0;)
		if (script.lines[i].kind == L_MOUNT)
			umount2(script.lines[i].path, MNT_DETACH);
	emit("@ENDSCENARIO %s %s", script.name, run_failed ? "err" : "ok");
	return run_failed ? EXIT_FAILURE_RUN : EXIT_OK;
}

static int open_output(const char *path)
{
	struct termios t;
	int fd;

	if (path && !strcmp(path, "-"))
		return STDOUT_FILENO;
	if (path)
		return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			    0644);
	/* O_NONBLOCK: do not wait for carrier on a serial line */
	fd = open("/dev/ttyS1", O_WRONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return STDOUT_FILENO;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	/* raw: no "\n" -> "\r\n", records arrive exactly as written */
	if (!tcgetattr(fd, &t)) {
		cfmakeraw(&t);
		tcsetattr(fd, TCSANOW, &t);
	}
	return fd;
}

static void usage(void)
{
	fprintf(stderr, "usage: mmwork SCRIPT [-o OUT|-]\n");
	exit(EXIT_BAD_SCRIPT);
}

int main(int argc, char **argv)
{
	struct parser *ps;
	const char *out = NULL;
	FILE *f;
	int opt;

	while ((opt = getopt(argc, argv, "o:")) != -1) {
		if (opt == 'o')
			out = optarg;
		else
			usage();
	}
	if (optind != argc - 1)
		usage();

	signal(SIGPIPE, SIG_IGN);
	pin_to_one_cpu();
	out_fd = open_output(out);
	if (out_fd < 0) {
		fprintf(stderr, "mmwork: cannot open %s: %s\n", out,
			strerror(errno));
		return EXIT_FAILURE_RUN;
	}

	script.name = "-";
	ps = calloc(1, sizeof(*ps));
	if (!ps)
		return EXIT_FAILURE_RUN;
	ps->s = &script;
	f = fopen(argv[optind], "re");
	if (!f)
		perr(ps, "cannot open script %s: %s", argv[optind],
		     strerror(errno));
	if (!f || parse_script(ps, f)) {
		emit("@SCENARIO %s", script.name);
		emit("@ERROR line %d: %s", ps->lineno, ps->err);
		emit("@ENDSCENARIO %s err", script.name);
		fprintf(stderr, "mmwork: %s: line %d: %s\n", argv[optind],
			ps->lineno, ps->err);
		return EXIT_BAD_SCRIPT;
	}
	fclose(f);
	free(ps);
	return run_script();
}
