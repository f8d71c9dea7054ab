// SPDX-License-Identifier: GPL-2.0-only
/*
 * proctop_cn - per-listener filtered process events for kernels < 6.6
 *
 * Linux 6.6 taught the proc connector (drivers/connector/cn_proc.c) to accept
 * a struct proc_input {mcast_op, event_type} from each listener, to filter
 * events per socket in the kernel (cn_filter()), to understand
 * PROC_EVENT_NONZERO_EXIT and to serve non-root listeners.  Older kernels
 * (6.1, 5.14, 5.15, ...) ignore the event mask, send everything and require
 * CAP_NET_ADMIN to join the multicast group.
 *
 * This module offers the same service on its own connector id
 * {cn_idx (default 11), cn_val (default 1)}:
 *
 *  - a listener (any uid) sends nlmsghdr + cn_msg{idx, val, len 8} +
 *    {u32 mcast_op, u32 event_type} (or a 4-byte {mcast_op}: mask ALL);
 *  - the module keeps a table of subscribers keyed by the sender's netlink
 *    port id and UNICASTS every event that passes the listener's mask (same
 *    rule as upstream cn_filter()) to it, in exactly the wire format of the
 *    proc connector (cn_msg + struct proc_event);
 *  - every LISTEN/IGNORE is answered with a PROC_EVENT_NONE ack carrying
 *    0 or a positive errno (seq = request seq, ack = request seq + 1).
 *
 * Events come from tracepoints found by name (their __tracepoint_* symbols
 * are not exported): sched_process_fork, sched_process_exec,
 * sched_process_exit and task_rename (for PROC_EVENT_COMM).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/list.h>
#include <linux/rculist.h>
#include <linux/spinlock.h>
#include <linux/atomic.h>
#include <linux/percpu.h>
#include <linux/delay.h>
#include <linux/connector.h>
#include <linux/cn_proc.h>
#include <linux/netlink.h>
#include <linux/notifier.h>
#include <linux/tracepoint.h>
#include <linux/kprobes.h>
#include <linux/ptrace.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/cred.h>
#include <linux/uidgid.h>
#include <linux/pid_namespace.h>
#include <linux/ktime.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/mm_types.h>
#include <net/net_namespace.h>

/*
 * Event bits as in the 6.6+ uapi <linux/cn_proc.h>; spelled out here because
 * older headers lack PROC_EVENT_NONZERO_EXIT, PROC_EVENT_ALL and proc_input.
 */
#define PTC_EV_NONE		0x00000000U
#define PTC_EV_FORK		0x00000001U
#define PTC_EV_EXEC		0x00000002U
#define PTC_EV_UID		0x00000004U
#define PTC_EV_GID		0x00000040U
#define PTC_EV_SID		0x00000080U
#define PTC_EV_PTRACE		0x00000100U
#define PTC_EV_COMM		0x00000200U
#define PTC_EV_NONZERO_EXIT	0x20000000U
#define PTC_EV_COREDUMP		0x40000000U
#define PTC_EV_EXIT		0x80000000U
#define PTC_EV_ALL (PTC_EV_FORK | PTC_EV_EXEC | PTC_EV_UID | PTC_EV_GID | \
		    PTC_EV_SID | PTC_EV_PTRACE | PTC_EV_COMM | \
		    PTC_EV_NONZERO_EXIT | PTC_EV_COREDUMP | PTC_EV_EXIT)

#define PTC_MCAST_LISTEN	1
#define PTC_MCAST_IGNORE	2

struct ptc_proc_input {		/* struct proc_input of 6.6+ */
	u32 mcast_op;
	u32 event_type;
};

/*
 * Extension (this module only, advertised in parameters/extensions): a
 * 12-byte request {mcast_op, event_type, flags} with PTC_WANT_NAMES asks
 * for names.  Such a subscriber's EXEC and EXIT events carry, right after
 * the unchanged 40-byte struct proc_event (cn_msg.len = 40 + the extension),
 * a struct ptc_names: the process's comm and, for EXEC, its argv (NUL
 * separated, at most PTC_ARGV_MAX bytes) as the new program's stack holds
 * it.  A process that lives less than a millisecond is gone before a reader
 * of /proc can look; the kernel still knows its name.  Subscribers that send
 * the 4- or 8-byte request get exactly the upstream messages.
 */
struct ptc_proc_input_ext {
	u32 mcast_op;
	u32 event_type;
	u32 flags;
};
#define PTC_WANT_NAMES		0x1
#define PTC_EXTENSIONS		PTC_WANT_NAMES

#define PTC_NAMES_MAGIC		0x4e435450U	/* "PTCN" little-endian */
#define PTC_NAMES_ARGV_CUT	0x1	/* argv longer than PTC_ARGV_MAX: cut */
#define PTC_NAMES_ARGV_NONE	0x2	/* argv could not be read (not resident) */
#define PTC_ARGV_MAX		256
struct ptc_names {
	u32 magic;
	u16 argv_len;		/* bytes of argv[] that follow */
	u16 flags;		/* PTC_NAMES_ARGV_* */
	char comm[TASK_COMM_LEN];
	char argv[];
};

/* ---- parameters ---------------------------------------------------------- */

static unsigned int cn_idx = 11;	/* CN_NETLINK_USERS: unused in-tree */
module_param(cn_idx, uint, 0444);
MODULE_PARM_DESC(cn_idx, "connector idx to register (default 11)");

static unsigned int cn_val = 1;
module_param(cn_val, uint, 0444);
MODULE_PARM_DESC(cn_val, "connector val to register (default 1)");

static unsigned int max_subscribers = 1024;
module_param(max_subscribers, uint, 0644);
MODULE_PARM_DESC(max_subscribers,
		 "maximum number of sockets non-root users may subscribe, all together (default 1024)");

/*
 * One user must not lock the others out: without a per-uid bound a single
 * uid could fill the whole table.  Root is bound by neither limit (it is
 * the administrator, and it can unload the module anyway).
 */
static unsigned int max_per_uid = 32;
module_param(max_per_uid, uint, 0644);
MODULE_PARM_DESC(max_per_uid,
		 "maximum number of subscribed sockets per non-root uid, 0 = no limit (default 32)");

static bool own_uid_only;
module_param(own_uid_only, bool, 0644);
MODULE_PARM_DESC(own_uid_only,
		 "non-root subscribers only get events of processes with their real uid (default N)");

static bool use_kprobes;
module_param(use_kprobes, bool, 0444);
MODULE_PARM_DESC(use_kprobes,
		 "experimental: also report UID/GID/SID/PTRACE/COREDUMP (and COMM exactly as upstream) through kprobes on the kernel's proc_*_connector() hooks (default N)");

static int ptc_param_set_ro(const char *val, const struct kernel_param *kp)
{
	return -EPERM;
}

static unsigned int supported_events;
static const struct kernel_param_ops ptc_ro_uint_ops = {
	.set = ptc_param_set_ro,
	.get = param_get_uint,
};
module_param_cb(supported_events, &ptc_ro_uint_ops, &supported_events, 0444);
MODULE_PARM_DESC(supported_events, "mask of PROC_EVENT_* types this module emits (read-only)");

static atomic_long_t ptc_dropped = ATOMIC_LONG_INIT(0);
static int ptc_get_dropped(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%lu\n", (unsigned long)atomic_long_read(&ptc_dropped));
}
static const struct kernel_param_ops ptc_dropped_ops = {
	.set = ptc_param_set_ro,
	.get = ptc_get_dropped,
};
module_param_cb(dropped, &ptc_dropped_ops, NULL, 0444);
MODULE_PARM_DESC(dropped, "events (and acks) that could not be delivered (read-only)");

static unsigned int ptc_extensions = PTC_EXTENSIONS;
module_param_cb(extensions, &ptc_ro_uint_ops, &ptc_extensions, 0444);
MODULE_PARM_DESC(extensions,
		 "request flags understood in a 12-byte LISTEN: 0x1 = names (comm, argv) with EXEC/EXIT (read-only)");

static atomic_long_t ptc_refused = ATOMIC_LONG_INIT(0);
static int ptc_get_refused(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%lu\n", (unsigned long)atomic_long_read(&ptc_refused));
}
static const struct kernel_param_ops ptc_refused_ops = {
	.set = ptc_param_set_ro,
	.get = ptc_get_refused,
};
module_param_cb(refused, &ptc_refused_ops, NULL, 0444);
MODULE_PARM_DESC(refused,
		 "control messages refused: malformed, unknown op, over a limit, foreign namespace (read-only)");

static atomic_t ptc_nsubs = ATOMIC_INIT(0);
static int ptc_get_subscribers(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%d\n", atomic_read(&ptc_nsubs));
}
static const struct kernel_param_ops ptc_subscribers_ops = {
	.set = ptc_param_set_ro,
	.get = ptc_get_subscribers,
};
module_param_cb(subscribers, &ptc_subscribers_ops, NULL, 0444);
MODULE_PARM_DESC(subscribers, "current number of subscribed sockets (read-only)");

/* ---- subscriber table ------------------------------------------------------
 * Readers (tracepoint probes, atomic context) walk the list under RCU.
 * Writers (connector callback, netlink release notifier, a probe that finds a
 * port gone) take ptc_lock with interrupts off and free entries with
 * kfree_rcu().  The mask is updated in place (WRITE_ONCE) so a LISTEN on an
 * already subscribed port changes its filter from the next event on.
 */
struct ptc_sub {
	struct list_head node;
	struct rcu_head rcu;
	u32 portid;
	u32 mask;		/* valid_event()'d; never NONE */
	u32 flags;		/* PTC_WANT_* */
	kuid_t uid;
	bool dead;		/* unlinked, under ptc_lock */
};

static LIST_HEAD(ptc_subs);
static DEFINE_SPINLOCK(ptc_lock);
static struct cb_id ptc_cb_id;
static DEFINE_PER_CPU(u32, ptc_seq);
static atomic_t ptc_cb_inflight = ATOMIC_INIT(0);

/* caller holds ptc_lock */
static void ptc_unlink_locked(struct ptc_sub *s)
{
	if (s->dead)
		return;
	s->dead = true;
	list_del_rcu(&s->node);
	atomic_dec(&ptc_nsubs);
	kfree_rcu(s, rcu);
}

static void ptc_remove_port(u32 portid)
{
	struct ptc_sub *s, *n;
	unsigned long flags;

	spin_lock_irqsave(&ptc_lock, flags);
	list_for_each_entry_safe(s, n, &ptc_subs, node) {
		if (s->portid == portid)
			ptc_unlink_locked(s);
	}
	spin_unlock_irqrestore(&ptc_lock, flags);
}

static void ptc_remove_sub(struct ptc_sub *s)
{
	unsigned long flags;

	spin_lock_irqsave(&ptc_lock, flags);
	ptc_unlink_locked(s);
	spin_unlock_irqrestore(&ptc_lock, flags);
}

/* Same decision as upstream cn_filter(): true = deliver. */
static inline bool ptc_want(u32 mask, u32 what, u32 exit_code)
{
	if (mask == PTC_EV_ALL)
		return true;
	if ((mask & PTC_EV_NONZERO_EXIT) && what == PTC_EV_EXIT && exit_code)
		return true;
	return mask & what;
}

/* ---- sending ------------------------------------------------------------- */

/*
 * Like upstream: a cn_msg followed by an 8-byte aligned struct proc_event,
 * built in a stack buffer (cn_msg is 20 bytes, so start it 4 bytes in).
 */
#define PTC_MSG_SIZE (sizeof(struct cn_msg) + sizeof(struct proc_event) + 4)

static inline struct cn_msg *ptc_buffer_to_cn_msg(u8 *buffer)
{
	BUILD_BUG_ON(sizeof(struct cn_msg) != 20);
	BUILD_BUG_ON(sizeof(struct proc_event) != 40);
	return (struct cn_msg *)(buffer + 4);
}

static inline int ptc_unicast(struct cn_msg *msg, u32 portid)
{
	/* portid != 0 and group 0: netlink_unicast(), non-blocking for GFP_NOWAIT */
	int err = cn_netlink_send(msg, portid, 0, GFP_NOWAIT);

	return err < 0 ? err : 0;
}

/*
 * Deliver one event to every subscriber whose mask (and uid, when
 * own_uid_only) lets it through.  @task is the process the event is about.
 * Called from tracepoint probes: never sleeps.
 */
static void ptc_send_event_ext(struct cn_msg *msg, struct task_struct *task, u16 ext_len)
{
	struct proc_event *ev = (struct proc_event *)msg->data;
	u32 what = (u32)ev->what;
	u32 exit_code = what == PTC_EV_EXIT ? ev->event_data.exit.exit_code : 0;
	bool uid_filter = READ_ONCE(own_uid_only);
	struct ptc_sub *s;
	kuid_t tuid = INVALID_UID;
	int err;

	msg->id = ptc_cb_id;
	msg->ack = 0;
	msg->len = sizeof(*ev);
	msg->flags = 0;

	rcu_read_lock();
	if (uid_filter)
		tuid = task_uid(task);

	/* Keep seq/cpu consistent and events ordered per cpu, as upstream. */
	preempt_disable();
	msg->seq = __this_cpu_inc_return(ptc_seq) - 1;
	ev->cpu = smp_processor_id();

	list_for_each_entry_rcu(s, &ptc_subs, node) {
		if (!ptc_want(READ_ONCE(s->mask), what, exit_code))
			continue;
		if (uid_filter && !uid_eq(s->uid, GLOBAL_ROOT_UID) &&
		    !uid_eq(s->uid, tuid))
			continue;
		msg->len = sizeof(*ev) +
			   ((READ_ONCE(s->flags) & PTC_WANT_NAMES) ? ext_len : 0);
		err = ptc_unicast(msg, s->portid);
		if (err == -ECONNREFUSED)
			ptc_remove_sub(s);	/* socket is gone */
		else if (err)
			atomic_long_inc(&ptc_dropped);
	}
	preempt_enable();
	rcu_read_unlock();
}

#define ptc_send_event(msg, task) ptc_send_event_ext(msg, task, 0)

/*
 * The names extension after @ev, for @task == current; returns its length.
 * Copies argv with copy_from_user_nofault(): probes run with preemption
 * off, so nothing may fault; right after exec the arguments sit in pages the
 * kernel has just written, and if they do not, the event goes without them.
 */
#define PTC_NAMES_SIZE (sizeof(struct ptc_names) + PTC_ARGV_MAX)
static u16 ptc_fill_names(struct proc_event *ev, struct task_struct *task, bool argv)
{
	struct ptc_names *n = (struct ptc_names *)(ev + 1);
	struct mm_struct *mm = task->mm;
	unsigned long start, len;

	n->magic = PTC_NAMES_MAGIC;
	n->argv_len = 0;
	n->flags = 0;
	/* current's own comm, without task_lock (task_rename's probe runs under it) */
	memcpy(n->comm, task->comm, sizeof(n->comm));
	n->comm[sizeof(n->comm) - 1] = 0;
	if (argv && mm && task == current) {
		start = READ_ONCE(mm->arg_start);
		len = READ_ONCE(mm->arg_end) - start;
		if (len > PTC_ARGV_MAX) {
			len = PTC_ARGV_MAX;
			n->flags |= PTC_NAMES_ARGV_CUT;
		}
		if (len && !copy_from_user_nofault(n->argv, (const void __user *)start, len))
			n->argv_len = len;
		else if (len)
			n->flags |= PTC_NAMES_ARGV_NONE;
	}
	/* 8-byte multiple, zero padded: nothing of the stack leaks out */
	len = ALIGN(sizeof(*n) + n->argv_len, 8);
	memset((u8 *)n + sizeof(*n) + n->argv_len, 0, len - sizeof(*n) - n->argv_len);
	return len;
}

#define PTC_EVENT_START(msg, ev, buffer)				\
	do {								\
		msg = ptc_buffer_to_cn_msg(buffer);			\
		ev = (struct proc_event *)msg->data;			\
		memset(ev, 0, sizeof(*ev));				\
		ev->timestamp_ns = ktime_get_ns();			\
	} while (0)

/* ---- tracepoint probes ---------------------------------------------------- */

/* upstream: proc_fork_connector(p) in copy_process() */
static void ptc_probe_fork(void *data, struct task_struct *self,
			   struct task_struct *task)
{
	u8 buffer[PTC_MSG_SIZE] __aligned(8);
	struct task_struct *parent;
	struct proc_event *ev;
	struct cn_msg *msg;

	if (atomic_read(&ptc_nsubs) < 1)
		return;
	PTC_EVENT_START(msg, ev, buffer);
	ev->what = PROC_EVENT_FORK;
	rcu_read_lock();
	/* real_parent, not @self: for CLONE_THREAD/CLONE_PARENT it differs */
	parent = rcu_dereference(task->real_parent);
	ev->event_data.fork.parent_pid = parent->pid;
	ev->event_data.fork.parent_tgid = parent->tgid;
	rcu_read_unlock();
	ev->event_data.fork.child_pid = task->pid;
	ev->event_data.fork.child_tgid = task->tgid;
	ptc_send_event(msg, task);
}

/* upstream: proc_exec_connector(current) right after this tracepoint */
static void ptc_probe_exec(void *data, struct task_struct *task, pid_t old_pid,
			   struct linux_binprm *bprm)
{
	u8 buffer[PTC_MSG_SIZE + PTC_NAMES_SIZE] __aligned(8);
	struct proc_event *ev;
	struct cn_msg *msg;

	if (atomic_read(&ptc_nsubs) < 1)
		return;
	PTC_EVENT_START(msg, ev, buffer);
	ev->what = PROC_EVENT_EXEC;
	ev->event_data.exec.process_pid = task->pid;
	ev->event_data.exec.process_tgid = task->tgid;
	ptc_send_event_ext(msg, task, ptc_fill_names(ev, task, true));
}

/*
 * upstream: proc_exit_connector(tsk) after exit_notify() in do_exit().
 * do_exit() stores tsk->exit_code = code before trace_sched_process_exit(),
 * and exit_notify() changes neither exit_code nor exit_signal, so the values
 * are the ones upstream reports.
 */
static void ptc_probe_exit(void *data, struct task_struct *task)
{
	u8 buffer[PTC_MSG_SIZE + PTC_NAMES_SIZE] __aligned(8);
	struct task_struct *parent;
	struct proc_event *ev;
	struct cn_msg *msg;

	if (atomic_read(&ptc_nsubs) < 1)
		return;
	PTC_EVENT_START(msg, ev, buffer);
	ev->what = PROC_EVENT_EXIT;
	ev->event_data.exit.process_pid = task->pid;
	ev->event_data.exit.process_tgid = task->tgid;
	ev->event_data.exit.exit_code = task->exit_code;
	ev->event_data.exit.exit_signal = task->exit_signal;
	rcu_read_lock();
	if (pid_alive(task)) {
		parent = rcu_dereference(task->real_parent);
		ev->event_data.exit.parent_pid = parent->pid;
		ev->event_data.exit.parent_tgid = parent->tgid;
	}
	rcu_read_unlock();
	ptc_send_event_ext(msg, task, ptc_fill_names(ev, task, false));
}

/*
 * upstream: proc_comm_connector() after prctl(PR_SET_NAME) and after a write
 * to /proc/<pid>/comm from the same thread group.  task_rename also fires
 * for exec and for kernel/io threads being named, which upstream does not
 * report, so those are skipped.  The tracepoint runs before the copy: use
 * the new name it is given, truncated as __set_task_comm() does.
 */
static void ptc_probe_rename(void *data, struct task_struct *task, const char *comm)
{
	u8 buffer[PTC_MSG_SIZE] __aligned(8);
	struct proc_event *ev;
	struct cn_msg *msg;

	if (atomic_read(&ptc_nsubs) < 1)
		return;
	if (task->flags & (PF_KTHREAD | PF_IO_WORKER))
		return;
	if (current->in_execve || !same_thread_group(current, task))
		return;
	PTC_EVENT_START(msg, ev, buffer);
	ev->what = PROC_EVENT_COMM;
	ev->event_data.comm.process_pid = task->pid;
	ev->event_data.comm.process_tgid = task->tgid;
	strscpy_pad(ev->event_data.comm.comm, comm, sizeof(ev->event_data.comm.comm));
	ptc_send_event(msg, task);
}

struct ptc_tp {
	const char *name;
	void *probe;
	u32 events;
	bool required;
	struct tracepoint *tp;
	bool registered;
};

static struct ptc_tp ptc_tps[] = {
	{ "sched_process_fork", ptc_probe_fork, PTC_EV_FORK, true },
	{ "sched_process_exec", ptc_probe_exec, PTC_EV_EXEC, true },
	{ "sched_process_exit", ptc_probe_exit, PTC_EV_EXIT | PTC_EV_NONZERO_EXIT, true },
	{ "task_rename", ptc_probe_rename, PTC_EV_COMM, false },
};

static void ptc_find_tp(struct tracepoint *tp, void *priv)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(ptc_tps); i++)
		if (!ptc_tps[i].tp && !strcmp(tp->name, ptc_tps[i].name))
			ptc_tps[i].tp = tp;
}

static void ptc_unregister_probes(void)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(ptc_tps); i++) {
		if (!ptc_tps[i].registered)
			continue;
		tracepoint_probe_unregister(ptc_tps[i].tp, ptc_tps[i].probe, NULL);
		ptc_tps[i].registered = false;
	}
	/* no probe runs (or will run) after this */
	tracepoint_synchronize_unregister();
}

/* ---- kprobes on the kernel's own proc connector hooks ---------------------
 * Kernels built with CONFIG_PROC_EVENTS call proc_id_connector(),
 * proc_sid_connector(), proc_ptrace_connector(), proc_coredump_connector()
 * and proc_comm_connector() at exactly the places upstream reports those
 * events; there are no tracepoints for them.  A kprobe on each function's
 * entry gives the same events with the same arguments.  Only ftrace-based
 * kprobes are kept: their handlers run like tracepoint probes (preemption
 * off, interrupts on), while an int3-based kprobe handler runs in NMI-like
 * context where sending a netlink message is not allowed.
 */
#ifdef CONFIG_KPROBES
#define PTC_ARG(regs, n) regs_get_kernel_argument(regs, n)

static int ptc_kp_id(struct kprobe *kp, struct pt_regs *regs)
{
	struct task_struct *task = (struct task_struct *)PTC_ARG(regs, 0);
	int which_id = (int)PTC_ARG(regs, 1);
	u8 buffer[PTC_MSG_SIZE] __aligned(8);
	const struct cred *cred;
	struct proc_event *ev;
	struct cn_msg *msg;

	if (atomic_read(&ptc_nsubs) < 1)
		return 0;
	if (which_id != PROC_EVENT_UID && which_id != PROC_EVENT_GID)
		return 0;
	PTC_EVENT_START(msg, ev, buffer);
	ev->what = which_id;
	ev->event_data.id.process_pid = task->pid;
	ev->event_data.id.process_tgid = task->tgid;
	rcu_read_lock();
	cred = __task_cred(task);	/* commit_creds() installed it already */
	if (which_id == PROC_EVENT_UID) {
		ev->event_data.id.r.ruid = from_kuid_munged(&init_user_ns, cred->uid);
		ev->event_data.id.e.euid = from_kuid_munged(&init_user_ns, cred->euid);
	} else {
		ev->event_data.id.r.rgid = from_kgid_munged(&init_user_ns, cred->gid);
		ev->event_data.id.e.egid = from_kgid_munged(&init_user_ns, cred->egid);
	}
	rcu_read_unlock();
	ptc_send_event(msg, task);
	return 0;
}

static int ptc_kp_sid(struct kprobe *kp, struct pt_regs *regs)
{
	struct task_struct *task = (struct task_struct *)PTC_ARG(regs, 0);
	u8 buffer[PTC_MSG_SIZE] __aligned(8);
	struct proc_event *ev;
	struct cn_msg *msg;

	if (atomic_read(&ptc_nsubs) < 1)
		return 0;
	PTC_EVENT_START(msg, ev, buffer);
	ev->what = PROC_EVENT_SID;
	ev->event_data.sid.process_pid = task->pid;
	ev->event_data.sid.process_tgid = task->tgid;
	ptc_send_event(msg, task);
	return 0;
}

static int ptc_kp_ptrace(struct kprobe *kp, struct pt_regs *regs)
{
	struct task_struct *task = (struct task_struct *)PTC_ARG(regs, 0);
	int ptrace_id = (int)PTC_ARG(regs, 1);
	u8 buffer[PTC_MSG_SIZE] __aligned(8);
	struct proc_event *ev;
	struct cn_msg *msg;

	if (atomic_read(&ptc_nsubs) < 1)
		return 0;
	if (ptrace_id != PTRACE_ATTACH && ptrace_id != PTRACE_DETACH)
		return 0;
	PTC_EVENT_START(msg, ev, buffer);
	ev->what = PROC_EVENT_PTRACE;
	ev->event_data.ptrace.process_pid = task->pid;
	ev->event_data.ptrace.process_tgid = task->tgid;
	if (ptrace_id == PTRACE_ATTACH) {
		ev->event_data.ptrace.tracer_pid = current->pid;
		ev->event_data.ptrace.tracer_tgid = current->tgid;
	}
	ptc_send_event(msg, task);
	return 0;
}

static int ptc_kp_coredump(struct kprobe *kp, struct pt_regs *regs)
{
	struct task_struct *task = (struct task_struct *)PTC_ARG(regs, 0);
	u8 buffer[PTC_MSG_SIZE] __aligned(8);
	struct task_struct *parent;
	struct proc_event *ev;
	struct cn_msg *msg;

	if (atomic_read(&ptc_nsubs) < 1)
		return 0;
	PTC_EVENT_START(msg, ev, buffer);
	ev->what = PROC_EVENT_COREDUMP;
	ev->event_data.coredump.process_pid = task->pid;
	ev->event_data.coredump.process_tgid = task->tgid;
	rcu_read_lock();
	if (pid_alive(task)) {
		parent = rcu_dereference(task->real_parent);
		ev->event_data.coredump.parent_pid = parent->pid;
		ev->event_data.coredump.parent_tgid = parent->tgid;
	}
	rcu_read_unlock();
	ptc_send_event(msg, task);
	return 0;
}

static int ptc_kp_comm(struct kprobe *kp, struct pt_regs *regs)
{
	struct task_struct *task = (struct task_struct *)PTC_ARG(regs, 0);
	u8 buffer[PTC_MSG_SIZE] __aligned(8);
	struct proc_event *ev;
	struct cn_msg *msg;

	if (atomic_read(&ptc_nsubs) < 1)
		return 0;
	PTC_EVENT_START(msg, ev, buffer);
	ev->what = PROC_EVENT_COMM;
	ev->event_data.comm.process_pid = task->pid;
	ev->event_data.comm.process_tgid = task->tgid;
	__get_task_comm(ev->event_data.comm.comm, sizeof(ev->event_data.comm.comm), task);
	ptc_send_event(msg, task);
	return 0;
}

struct ptc_kp {
	const char *symbol;
	kprobe_pre_handler_t handler;
	u32 events;
	struct kprobe kp;
	bool registered;
};

static struct ptc_kp ptc_kps[] = {
	{ "proc_id_connector", ptc_kp_id, PTC_EV_UID | PTC_EV_GID },
	{ "proc_sid_connector", ptc_kp_sid, PTC_EV_SID },
	{ "proc_ptrace_connector", ptc_kp_ptrace, PTC_EV_PTRACE },
	{ "proc_coredump_connector", ptc_kp_coredump, PTC_EV_COREDUMP },
	{ "proc_comm_connector", ptc_kp_comm, PTC_EV_COMM },
};

/* returns the events covered */
static u32 ptc_register_kprobes(void)
{
	u32 events = 0;
	int i, err;

	for (i = 0; i < ARRAY_SIZE(ptc_kps); i++) {
		struct ptc_kp *k = &ptc_kps[i];

		memset(&k->kp, 0, sizeof(k->kp));
		k->kp.symbol_name = k->symbol;
		k->kp.pre_handler = k->handler;
		err = register_kprobe(&k->kp);
		if (!err && !kprobe_ftrace(&k->kp)) {
			unregister_kprobe(&k->kp);
			err = -EOPNOTSUPP;
		}
		if (err) {
			pr_info("no kprobe on %s (%d): its events are not supported\n",
				k->symbol, err);
			continue;
		}
		k->registered = true;
		events |= k->events;
	}
	return events;
}

static void ptc_unregister_kprobes(void)
{
	int i;

	/* unregister_kprobe() waits until no handler runs */
	for (i = 0; i < ARRAY_SIZE(ptc_kps); i++) {
		if (ptc_kps[i].registered)
			unregister_kprobe(&ptc_kps[i].kp);
		ptc_kps[i].registered = false;
	}
}
#else
static u32 ptc_register_kprobes(void) { return 0; }
static void ptc_unregister_kprobes(void) { }
#endif

/* ---- control messages ----------------------------------------------------- */

static void ptc_ack(u32 portid, u32 seq, u32 err)
{
	u8 buffer[PTC_MSG_SIZE] __aligned(8);
	struct proc_event *ev;
	struct cn_msg *msg;

	PTC_EVENT_START(msg, ev, buffer);
	ev->what = PROC_EVENT_NONE;
	ev->cpu = raw_smp_processor_id();
	ev->event_data.ack.err = err;
	msg->id = ptc_cb_id;
	msg->seq = seq;
	msg->ack = seq + 1;
	msg->len = sizeof(*ev);
	msg->flags = 0;
	if (ptc_unicast(msg, portid))
		atomic_long_inc(&ptc_dropped);
}

/* 0 or a negative errno: -ENOSPC table full, -EDQUOT this uid's share used */
static int ptc_listen(u32 portid, kuid_t uid, u32 mask, u32 want)
{
	bool root = uid_eq(uid, GLOBAL_ROOT_UID);
	unsigned int per_uid = READ_ONCE(max_per_uid);
	unsigned int mine = 0, nonroot = 0;
	struct ptc_sub *s, *fresh;
	unsigned long flags;

	fresh = kzalloc(sizeof(*fresh), GFP_KERNEL);

	spin_lock_irqsave(&ptc_lock, flags);
	list_for_each_entry(s, &ptc_subs, node) {
		if (s->portid == portid) {
			/* live mask change: effective from the next event */
			WRITE_ONCE(s->mask, mask);
			WRITE_ONCE(s->flags, want);
			s->uid = uid;
			spin_unlock_irqrestore(&ptc_lock, flags);
			kfree(fresh);
			return 0;
		}
		if (!uid_eq(s->uid, GLOBAL_ROOT_UID))
			nonroot++;
		if (uid_eq(s->uid, uid))
			mine++;
	}
	if (!fresh) {
		spin_unlock_irqrestore(&ptc_lock, flags);
		return -ENOMEM;
	}
	if (!root && per_uid && mine >= per_uid) {
		spin_unlock_irqrestore(&ptc_lock, flags);
		kfree(fresh);
		return -EDQUOT;
	}
	if (!root && nonroot >= READ_ONCE(max_subscribers)) {
		spin_unlock_irqrestore(&ptc_lock, flags);
		kfree(fresh);
		return -ENOSPC;
	}
	fresh->portid = portid;
	fresh->uid = uid;
	fresh->mask = mask;
	fresh->flags = want;
	list_add_tail_rcu(&fresh->node, &ptc_subs);
	atomic_inc(&ptc_nsubs);
	spin_unlock_irqrestore(&ptc_lock, flags);
	return 0;
}

/*
 * Runs synchronously in the sender's context (netlink_unicast_kernel ->
 * cn_rx_skb -> cn_call_callback), so current is the requester.
 */
static void ptc_cn_callback(struct cn_msg *msg, struct netlink_skb_parms *nsp)
{
	u32 op, mask, want = 0, err = 0;

	atomic_inc(&ptc_cb_inflight);

	if (!nsp->portid)
		goto out;

	if (msg->len == sizeof(struct ptc_proc_input)) {
		const struct ptc_proc_input *in = (const void *)msg->data;

		op = in->mcast_op;
		mask = in->event_type;
	} else if (msg->len == sizeof(struct ptc_proc_input_ext)) {
		const struct ptc_proc_input_ext *in = (const void *)msg->data;

		op = in->mcast_op;
		mask = in->event_type;
		want = in->flags;
		if (want & ~PTC_EXTENSIONS) {
			err = EINVAL;	/* a flag this module does not know */
			goto ack;
		}
	} else if (msg->len == sizeof(u32)) {
		op = *(const u32 *)msg->data;
		mask = PTC_EV_ALL;
	} else {
		err = EINVAL;
		goto ack;
	}

	/*
	 * Like upstream: pids in events are init-namespace pids, so requesters
	 * from other user/pid namespaces are turned away (upstream stays
	 * silent; we answer EPERM).
	 */
	if (current_user_ns() != &init_user_ns ||
	    task_active_pid_ns(current) != &init_pid_ns) {
		err = EPERM;
		goto ack;
	}

	/* upstream: valid_event(), then NONE means ALL */
	mask &= PTC_EV_ALL;
	if (mask == PTC_EV_NONE)
		mask = PTC_EV_ALL;

	switch (op) {
	case PTC_MCAST_LISTEN:
		err = -ptc_listen(nsp->portid, nsp->creds.uid, mask, want); /* ack: positive */
		break;
	case PTC_MCAST_IGNORE:
		ptc_remove_port(nsp->portid);
		break;
	default:
		err = EINVAL;
		break;
	}
ack:
	if (err)
		atomic_long_inc(&ptc_refused);
	ptc_ack(nsp->portid, msg->seq, err);
out:
	atomic_dec(&ptc_cb_inflight);
}

/* ---- socket release ------------------------------------------------------- */

static int ptc_netlink_event(struct notifier_block *nb, unsigned long event, void *ptr)
{
	struct netlink_notify *n = ptr;

	if (event == NETLINK_URELEASE && n->protocol == NETLINK_CONNECTOR &&
	    net_eq(n->net, &init_net) && n->portid)
		ptc_remove_port(n->portid);
	return NOTIFY_DONE;
}

static struct notifier_block ptc_netlink_nb = {
	.notifier_call = ptc_netlink_event,
};

/* ---- init / exit ------------------------------------------------------------ */

static void ptc_free_all(void)
{
	struct ptc_sub *s, *n;
	unsigned long flags;

	spin_lock_irqsave(&ptc_lock, flags);
	list_for_each_entry_safe(s, n, &ptc_subs, node)
		ptc_unlink_locked(s);
	spin_unlock_irqrestore(&ptc_lock, flags);
	/* kfree_rcu()'d entries need no module code: nothing more to wait for */
}

static int __init ptc_init(void)
{
	int i, err;

	for_each_kernel_tracepoint(ptc_find_tp, NULL);
	supported_events = 0;
	for (i = 0; i < ARRAY_SIZE(ptc_tps); i++) {
		if (!ptc_tps[i].tp) {
			if (ptc_tps[i].required) {
				pr_err("tracepoint %s not found\n", ptc_tps[i].name);
				return -ENOENT;
			}
			pr_info("tracepoint %s not found, its events are not supported\n",
				ptc_tps[i].name);
		}
	}

	err = netlink_register_notifier(&ptc_netlink_nb);
	if (err)
		return err;

	if (use_kprobes)
		supported_events |= ptc_register_kprobes();

	for (i = 0; i < ARRAY_SIZE(ptc_tps); i++) {
		if (!ptc_tps[i].tp)
			continue;
		/* task_rename is only the fallback for COMM */
		if (!ptc_tps[i].required && (supported_events & ptc_tps[i].events) == ptc_tps[i].events)
			continue;
		err = tracepoint_probe_register(ptc_tps[i].tp, ptc_tps[i].probe, NULL);
		if (err) {
			if (ptc_tps[i].required) {
				pr_err("cannot attach to %s: %d\n", ptc_tps[i].name, err);
				goto out_probes;
			}
			pr_info("cannot attach to %s (%d), its events are not supported\n",
				ptc_tps[i].name, err);
			err = 0;
			continue;
		}
		ptc_tps[i].registered = true;
		supported_events |= ptc_tps[i].events;
	}

	ptc_cb_id.idx = cn_idx;
	ptc_cb_id.val = cn_val;
	err = cn_add_callback(&ptc_cb_id, "proctop_cn", ptc_cn_callback);
	if (err) {
		pr_err("cn_add_callback(idx=%u, val=%u) failed: %d\n", cn_idx, cn_val, err);
		goto out_probes;
	}
	pr_info("loaded: connector idx=%u val=%u, events 0x%08x\n",
		cn_idx, cn_val, supported_events);
	return 0;

out_probes:
	ptc_unregister_kprobes();
	ptc_unregister_probes();
	netlink_unregister_notifier(&ptc_netlink_nb);
	ptc_free_all();
	return err;
}

static void __exit ptc_exit(void)
{
	/* 1. no new control messages reach us ... */
	cn_del_callback(&ptc_cb_id);
	/* 2. ... no probe runs any more (long grace periods) ... */
	ptc_unregister_kprobes();
	ptc_unregister_probes();
	/*
	 * 3. ... and no control message is still being handled: the connector
	 * core does not wait for callbacks running when cn_del_callback()
	 * returns, so wait for ours.
	 */
	while (atomic_read(&ptc_cb_inflight))
		usleep_range(500, 1000);
	synchronize_rcu();
	/* 4. socket release notifications are no longer needed */
	netlink_unregister_notifier(&ptc_netlink_nb);
	ptc_free_all();
	pr_info("unloaded (dropped %lu)\n", (unsigned long)atomic_long_read(&ptc_dropped));
}

module_init(ptc_init);
module_exit(ptc_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Filtered, unprivileged proc connector events (6.6 semantics) for older kernels");
MODULE_AUTHOR("proctop developers");
