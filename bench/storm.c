/* Process-storm helper for proctop's benchmarks (compiled by bench/run; static).
 *
 *   storm spawn N OUT [--fail SHARE] [--exec] [--parallel P] [--threads T]
 *               [--window W] [--rate R] [--sleep-us U] [--tag TAG]
 *       Spawn N short-lived processes as fast as possible (or at R/s), a share
 *       SHARE (0..1) of them exiting non-zero. With --exec each child execs this
 *       same static binary as "storm child CODE SLEEP THREADS TAG-INDEX", so
 *       its argv is unique and checkable. Ground truth goes to OUT, one line per
 *       child: "pid wait_status index". A JSON summary goes to stdout.
 *   storm hold N            fork N sleeping children, print their pids, then
 *                           "ready"; on EOF of stdin kill (SIGKILL) and reap them.
 *   storm scan REPEAT       scan /proc like a polling monitor (read every
 *                           /proc/PID/stat), REPEAT times; JSON to stdout.
 *   storm pidfd PIDFILE     pidfd_open every pid in PIDFILE, print "ready",
 *                           epoll until all exited; JSON to stdout.
 *   storm listen MASK N     minimal C proc-connector listener (6.6 filter):
 *                           print "ready", count N events, JSON to stdout.
 *   storm readlat MASK      the floor of a reader (bench/naming.py): one thread that
 *                           recvs and reads /proc/PID/cmdline at each exec, nothing
 *                           else; "ready", then at EOF of stdin a JSON list of the
 *                           microseconds from each exec's kernel stamp to its read's end.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Linux 6.6 uapi (struct proc_input); older headers lack it */
struct storm_proc_input {
	uint32_t mcast_op;
	uint32_t event_type;
};
#define STORM_EVENT_ALL 0xe00003c7u /* fork exec uid gid sid ptrace comm nonzero-exit coredump exit */

static char self_path[4096];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_self(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void *thread_noop(void *arg)
{
	return arg;
}

static void child_body(int code, long sleep_us, int threads)
{
	pthread_t t[64];
	if (threads > 64)
		threads = 64;
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, thread_noop, NULL);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	if (sleep_us > 0) {
		struct timespec ts = {sleep_us / 1000000, (sleep_us % 1000000) * 1000};
		nanosleep(&ts, NULL);
	}
	_exit(code);
}

struct spawn_opts {
	long n;
	double fail;
	int exec;
	int threads;
	int window;
	double rate; /* per spawner */
	long sleep_us;
	const char *tag;
};

/* child i fails iff floor((i+1)*share) > floor(i*share): evenly spread, exact count */
static int code_for(long i, double share)
{
	if ((long)((i + 1) * share) > (long)(i * share))
		return 1 + (int)(i % 250);
	return 0;
}

static void spawner(struct spawn_opts *o, long first, long count, FILE *out)
{
	long started = 0, done = 0, inflight = 0;
	double t0 = now();
	char codebuf[16], sleepbuf[32], thrbuf[16], tagbuf[256];
	/* pid -> index+1 (pids are < pid_max) */
	long pid_max = 4194304;
	FILE *pm = fopen("/proc/sys/kernel/pid_max", "r");
	if (pm) {
		if (fscanf(pm, "%ld", &pid_max) != 1)
			pid_max = 4194304;
		fclose(pm);
	}
	int32_t *slot = calloc(pid_max + 1, sizeof(int32_t));
	while (done < count) {
		while (started < count && inflight < o->window) {
			if (o->rate > 0) {
				double due = t0 + started / o->rate;
				double d = due - now();
				if (d > 0) {
					if (inflight)
						break; /* reap meanwhile */
					struct timespec ts = {(time_t)d, (long)((d - (time_t)d) * 1e9)};
					nanosleep(&ts, NULL);
				}
			}
			long i = first + started;
			int code = code_for(i, o->fail);
			if (o->exec) {
				snprintf(codebuf, sizeof codebuf, "%d", code);
				snprintf(sleepbuf, sizeof sleepbuf, "%ld", o->sleep_us);
				snprintf(thrbuf, sizeof thrbuf, "%d", o->threads);
				snprintf(tagbuf, sizeof tagbuf, "%s-%ld", o->tag, i);
			}
			/* fork, not vfork: the spawner keeps forking while children exec */
			pid_t pid = fork();
			if (pid < 0) {
				if (errno == EAGAIN && inflight)
					break;
				perror("fork");
				exit(1);
			}
			if (pid == 0) {
				if (o->exec) {
					char *argv[] = {"storm", "child", codebuf, sleepbuf, thrbuf, tagbuf, NULL};
					char *envp[] = {NULL};
					execve(self_path, argv, envp);
					_exit(127);
				}
				child_body(code, o->sleep_us, o->threads);
			}
			slot[pid] = (int32_t)(started + 1);
			started++;
			inflight++;
		}
		int status;
		pid_t pid = waitpid(-1, &status, 0);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			perror("waitpid");
			exit(1);
		}
		if (pid <= pid_max && slot[pid]) {
			fprintf(out, "%d %d %ld\n", pid, status, first + slot[pid] - 1);
			slot[pid] = 0;
		}
		inflight--;
		done++;
	}
	free(slot);
}

static int cmd_spawn(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: storm spawn N OUT [options]\n");
		return 2;
	}
	struct spawn_opts o = {.n = atol(argv[2]), .fail = 0.01, .window = 16, .tag = "storm"};
	const char *outpath = argv[3];
	int parallel = 1;
	for (int i = 4; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : "0";
		if (!strcmp(a, "--exec"))
			o.exec = 1;
		else if (!strcmp(a, "--fail"))
			o.fail = atof(v), i++;
		else if (!strcmp(a, "--parallel"))
			parallel = atoi(v), i++;
		else if (!strcmp(a, "--threads"))
			o.threads = atoi(v), i++;
		else if (!strcmp(a, "--window"))
			o.window = atoi(v), i++;
		else if (!strcmp(a, "--rate"))
			o.rate = atof(v), i++;
		else if (!strcmp(a, "--sleep-us"))
			o.sleep_us = atol(v), i++;
		else if (!strcmp(a, "--tag"))
			o.tag = v, i++;
		else {
			fprintf(stderr, "storm: unknown option %s\n", a);
			return 2;
		}
	}
	if (parallel < 1)
		parallel = 1;
	if (o.rate > 0)
		o.rate /= parallel;
	double t0 = now();
	char path[4200];
	pid_t sp[256];
	if (parallel > 256)
		parallel = 256;
	for (int p = 0; p < parallel; p++) {
		long first = o.n * p / parallel, last = o.n * (p + 1) / parallel;
		snprintf(path, sizeof path, "%s.%d", outpath, p);
		sp[p] = fork();
		if (sp[p] == 0) {
			FILE *f = fopen(path, "w");
			if (!f) {
				perror(path);
				_exit(1);
			}
			spawner(&o, first, last - first, f);
			fclose(f);
			_exit(0);
		}
	}
	int failed = 0;
	for (int p = 0; p < parallel; p++) {
		int st;
		waitpid(sp[p], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			failed = 1;
	}
	double t1 = now();
	FILE *out = fopen(outpath, "w");
	long nonzero = 0, total = 0;
	for (int p = 0; p < parallel; p++) {
		snprintf(path, sizeof path, "%s.%d", outpath, p);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		int pid, st;
		long idx;
		while (fscanf(f, "%d %d %ld", &pid, &st, &idx) == 3) {
			fprintf(out, "%d %d %ld\n", pid, st, idx);
			total++;
			if (st)
				nonzero++;
		}
		fclose(f);
		unlink(path);
	}
	fclose(out);
	printf("{\"n\": %ld, \"nonzero\": %ld, \"elapsed\": %.6f, \"rate\": %.1f, \"parallel\": %d, \"exec\": %d, "
	       "\"threads\": %d, \"spawners\": [",
	       total, nonzero, t1 - t0, total / (t1 - t0), parallel, o.exec, o.threads);
	for (int p = 0; p < parallel; p++)
		printf("%s%d", p ? ", " : "", sp[p]);
	printf("], \"parent\": %d}\n", getpid());
	return failed;
}

static int cmd_hold(int argc, char **argv)
{
	long n = argc > 2 ? atol(argv[2]) : 1000;
	pid_t *pids = calloc(n, sizeof(pid_t));
	long made = 0;
	pid_t me = getpid();
	for (; made < n; made++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			break;
		}
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != me)
				_exit(0);
			for (;;)
				pause();
		}
		pids[made] = pid;
	}
	for (long i = 0; i < made; i++)
		printf("%d\n", pids[i]);
	printf("ready %ld\n", made);
	fflush(stdout);
	char buf[256];
	while (read(0, buf, sizeof buf) > 0)
		;
	for (long i = 0; i < made; i++)
		kill(pids[i], SIGKILL);
	for (long i = 0; i < made; i++)
		waitpid(pids[i], NULL, 0);
	return made == n ? 0 : 1;
}

static int cmd_scan(int argc, char **argv)
{
	int repeat = argc > 2 ? atoi(argv[2]) : 1;
	char path[300], buf[1024];
	double best_wall = 1e9, best_cpu = 1e9, sum_wall = 0, sum_cpu = 0;
	long pids = 0;
	for (int r = 0; r < repeat; r++) {
		double w0 = now(), c0 = cpu_self();
		DIR *d = opendir("/proc");
		struct dirent *e;
		pids = 0;
		while ((e = readdir(d))) {
			if (e->d_name[0] < '0' || e->d_name[0] > '9')
				continue;
			snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
			int fd = open(path, O_RDONLY);
			if (fd < 0)
				continue;
			ssize_t k = read(fd, buf, sizeof buf - 1);
			close(fd);
			if (k > 0)
				pids++;
		}
		closedir(d);
		double w = now() - w0, c = cpu_self() - c0;
		sum_wall += w, sum_cpu += c;
		if (w < best_wall)
			best_wall = w;
		if (c < best_cpu)
			best_cpu = c;
	}
	printf("{\"pids\": %ld, \"repeat\": %d, \"wall_mean\": %.6f, \"cpu_mean\": %.6f, \"wall_min\": %.6f, "
	       "\"cpu_min\": %.6f}\n",
	       pids, repeat, sum_wall / repeat, sum_cpu / repeat, best_wall, best_cpu);
	return 0;
}

static int cmd_pidfd(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	FILE *f = fopen(argv[2], "r");
	if (!f) {
		perror(argv[2]);
		return 1;
	}
	long nr_open = 1 << 20;
	FILE *no = fopen("/proc/sys/fs/nr_open", "r");
	if (no) {
		if (fscanf(no, "%ld", &nr_open) != 1)
			nr_open = 1 << 20;
		fclose(no);
	}
	struct rlimit rl = {nr_open, nr_open};
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
		getrlimit(RLIMIT_NOFILE, &rl);
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	long n = 0, open_failed = 0;
	int pid;
	double c0 = cpu_self();
	while (fscanf(f, "%d", &pid) == 1) {
		int fd = syscall(SYS_pidfd_open, pid, 0);
		if (fd < 0) {
			open_failed++;
			continue;
		}
		struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
		n++;
	}
	fclose(f);
	double c1 = cpu_self();
	printf("ready %ld\n", n);
	fflush(stdout);
	long seen = 0;
	struct epoll_event evs[256];
	while (seen < n) {
		int k = epoll_wait(ep, evs, 256, 30000);
		if (k <= 0)
			break;
		for (int i = 0; i < k; i++) {
			epoll_ctl(ep, EPOLL_CTL_DEL, evs[i].data.fd, NULL);
			close(evs[i].data.fd);
		}
		seen += k;
	}
	double c2 = cpu_self();
	printf("{\"watched\": %ld, \"open_failed\": %ld, \"seen\": %ld, \"cpu_setup\": %.6f, \"cpu_wait\": %.6f}\n", n,
	       open_failed, seen, c1 - c0, c2 - c1);
	return 0;
}

/* A proc connector socket bound to CN_IDX_PROC with a 64 MiB buffer, LISTENing to mask (a 6.6+
 * filter); -1 (after perror) when the kernel refuses. flags: more socket() flags (SOCK_NONBLOCK). */
static int subscribe(uint32_t mask, int flags)
{
	int s = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | flags, NETLINK_CONNECTOR);
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC, .nl_pid = 0};
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
		perror("netlink");
		if (s >= 0)
			close(s);
		return -1;
	}
	int big = 64 << 20;
	setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
	struct {
		struct nlmsghdr nl;
		struct cn_msg cn;
		struct storm_proc_input in;
	} __attribute__((packed)) req;
	memset(&req, 0, sizeof req);
	req.nl.nlmsg_len = sizeof req;
	req.nl.nlmsg_type = NLMSG_DONE;
	req.cn.id.idx = CN_IDX_PROC;
	req.cn.id.val = CN_VAL_PROC;
	req.cn.len = sizeof(struct storm_proc_input);
	req.in.mcast_op = PROC_CN_MCAST_LISTEN;
	req.in.event_type = mask;
	if (send(s, &req, sizeof req, 0) < 0) {
		perror("send");
		close(s);
		return -1;
	}
	return s;
}

static int cmd_listen(int argc, char **argv)
{
	uint32_t mask = argc > 2 ? strtoul(argv[2], NULL, 0) : STORM_EVENT_ALL;
	long want = argc > 3 ? atol(argv[3]) : 0; /* 0: until killed */
	int s = subscribe(mask, 0);
	if (s < 0)
		return 1;
	struct timeval tv = {0, 300000};
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	printf("ready\n");
	fflush(stdout);
	char buf[65536];
	long events = 0, nonzero = 0, lost = 0;
	while (want == 0 || events < want) {
		ssize_t k = recv(s, buf, sizeof buf, 0);
		if (k < 0) {
			if (errno == ENOBUFS) {
				lost++;
				continue;
			}
			continue; /* timeout: keep listening until a signal */
		}
		for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, k); nh = NLMSG_NEXT(nh, k)) {
			struct cn_msg *cn = NLMSG_DATA(nh);
			struct proc_event *ev = (struct proc_event *)cn->data;
			if (ev->what == PROC_EVENT_NONE)
				continue;
			events++;
			if (ev->what == PROC_EVENT_EXIT && ev->event_data.exit.exit_code)
				nonzero++;
		}
	}
	printf("{\"events\": %ld, \"nonzero_exits\": %ld, \"lost\": %ld, \"cpu\": %.6f}\n", events, nonzero, lost,
	       cpu_self());
	return 0;
}

static int cmd_readlat(int argc, char **argv)
{
	uint32_t mask = argc > 2 ? strtoul(argv[2], NULL, 0) : STORM_EVENT_ALL;
	int s = subscribe(mask, SOCK_NONBLOCK);
	if (s < 0)
		return 1;
	printf("ready\n");
	fflush(stdout);
	size_t cap = 1 << 16, n = 0;
	double *lat = malloc(cap * sizeof *lat);
	char buf[65536], path[64], argvbuf[4096];
	struct pollfd fds[2] = {{.fd = s, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
	for (;;) {
		if (poll(fds, 2, 250) < 0 && errno != EINTR)
			break;
		if (fds[1].revents)
			break; /* stdin: a line or EOF ends the run */
		for (;;) {
			ssize_t k = recv(s, buf, sizeof buf, 0);
			if (k < 0)
				break; /* EAGAIN (drained) or ENOBUFS: poll again */
			for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, k); nh = NLMSG_NEXT(nh, k)) {
				struct cn_msg *cn = NLMSG_DATA(nh);
				struct proc_event *ev = (struct proc_event *)cn->data;
				if (ev->what != PROC_EVENT_EXEC)
					continue;
				snprintf(path, sizeof path, "/proc/%d/cmdline", ev->event_data.exec.process_tgid);
				int fd = open(path, O_RDONLY | O_CLOEXEC);
				if (fd >= 0) {
					if (read(fd, argvbuf, sizeof argvbuf) < 0)
						argvbuf[0] = 0;
					close(fd);
				}
				struct timespec t;
				clock_gettime(CLOCK_MONOTONIC, &t);
				double us = ((double)t.tv_sec * 1e9 + t.tv_nsec - (double)ev->timestamp_ns) / 1e3;
				if (n == cap)
					lat = realloc(lat, (cap *= 2) * sizeof *lat);
				lat[n++] = us;
			}
		}
	}
	printf("[");
	for (size_t i = 0; i < n; i++)
		printf("%s%.1f", i ? ", " : "", lat[i]);
	printf("]\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "child")) {
		child_body(argc > 2 ? atoi(argv[2]) : 0, argc > 3 ? atol(argv[3]) : 0, argc > 4 ? atoi(argv[4]) : 0);
	}
	ssize_t k = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
	if (k > 0)
		self_path[k] = 0;
	if (argc >= 2 && !strcmp(argv[1], "spawn"))
		return cmd_spawn(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "hold"))
		return cmd_hold(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "scan"))
		return cmd_scan(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "pidfd"))
		return cmd_pidfd(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "listen"))
		return cmd_listen(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "readlat"))
		return cmd_readlat(argc, argv);
	fprintf(stderr, "usage: storm spawn|hold|scan|pidfd|listen|readlat ...\n");
	return 2;
}
