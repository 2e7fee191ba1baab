/*
 * Code shaped like a kernel module, for an end-to-end check: every text relocation gcc emits with
 * kernel-like flags must pass, and every data relocation must be aligned.  Built at test time with:
 *   gcc -c -O2 -mcmodel=kernel -fno-pic -ffunction-sections -fdata-sections -mno-red-zone
 *       -fno-asynchronous-unwind-tables -pg -mrecord-mcount -mfentry -fpatchable-function-entry=16,16
 *       -fcf-protection=branch -mindirect-branch=thunk-extern -mindirect-branch-cs-prefix
 *       -mfunction-return=thunk-extern -mharden-sls=all -fno-jump-tables kernel_style.c
 * (kbuild's flag set, 6.12 flavour; the 6.1 flavour drops the
 * patchable entries and IBT).
 */
struct item {
	long key;
	int count;
	short small;
	unsigned char flags;
	struct item *next;
};

struct pcpu {
	void *task;
	int cpu;
	int depth;
};

extern struct item items[64];
extern struct item *head;
extern short last_small;
extern long counter;
extern int (*hook)(int);
extern __seg_gs struct pcpu pcpu_hot;
extern void ext_func(void);
extern int ext_check(struct item *);
extern void __attribute__((cold, noinline)) report(const char *, long);

static struct item local_items[8];
static int local_flag;

static int __attribute__((noinline)) helper(int x)
{
	return x * 3 + local_flag;
}

void store_small(short v)
{
	last_small = v;
	local_items[2].small = v;
}

long sum_keys(int n)
{
	long s = 0;
	for (int i = 0; i < n; i++)
		s += items[i].key;
	return s + helper(n);
}

int walk(void)
{
	int seen = 0;
	for (struct item *p = head; p; p = p->next) {
		if (__builtin_expect(p->count < 0, 0))
			report("negative count", p->key);
		seen += ext_check(p);
		p->flags |= 4;
	}
	counter += seen;
	return seen;
}

int call_hook(int v)
{
	if (hook)
		return hook(v) + pcpu_hot.cpu;
	ext_func();
	return pcpu_hot.depth;
}

void *current_task(void)
{
	pcpu_hot.depth++;
	return pcpu_hot.task;
}

int classify(int v)
{
	switch (v) {
	case 0: return helper(1);
	case 1: return local_flag = 5;
	case 2: return items[3].count;
	case 3: return (int)counter;
	case 4: ext_func(); return 4;
	case 5: return local_items[v].count;
	default: return -1;
	}
}

void set_fn(void)
{
	hook = helper;
	local_items[1].next = &items[5];
}

struct ops {
	int (*fn)(int);
	const char *name;
};

const struct ops my_ops = { .fn = helper, .name = "my_ops" };
struct ops *ops_ptr = (struct ops *)&my_ops;
