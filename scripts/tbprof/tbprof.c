// SPDX-License-Identifier: GPL-2.0
/*
 * A QEMU TCG plugin for `make profile`: counts how often each translation block runs, and how
 * often it was entered through a lookup in QEMU's per-vCPU jump cache and missed there. Writes
 * "<guest pc> <instructions> <executions> <lookups> <misses>" per block to the file given as
 * out=PATH when QEMU exits; `scripts/tbprof/report` turns this into counts per operation per
 * function.
 *
 * Under TCG the time a path takes follows the number of blocks it executes (each is a
 * dispatch), and more: a block reached by a direct jump within the page its predecessor starts
 * on is chained to it, but one reached by a return, an indirect jump, a jump to another page or
 * an exit to QEMU's main loop (sti, popf, stac, clac, ...) is looked up, first in the vCPU's
 * jump cache (4096 entries), and on a miss in the global hash table of blocks, which costs far
 * more. The plugin API does not show lookups, so the plugin models them from each block's last
 * instruction and replays them through a model of the jump cache. The model is QEMU 7.2's (the
 * QEMU of Debian 12): in system emulation its hash puts every address of a 4 KiB page into one
 * group of 64 entries, chosen by bits 12-23, and the entry within the group by bits 0-11, so
 * two hot blocks of one page collide whatever address the page is loaded at. Exits taken for
 * interrupts are not modelled. QEMU 10.0 hashes the same way (tb_jmp_cache_hash_func() of its
 * accel/tcg/tb-hash.h).
 *
 * Built by scripts/profile against the qemu-plugin.h of the installed QEMU. Memory accesses are
 * counted inline by the translated code: with QEMU 7.2's API (version 1) into a counter of the
 * block, shared by the vCPUs; from version 2 (QEMU 9.0), which dropped the shared inline ops,
 * into the block's slot of a per-vCPU scoreboard, summed when QEMU exits.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

/* How a block ends, which decides whether the next one is looked up. */
enum end {
	END_DIRECT, /* a direct jump, call or branch, or running into the next block */
	END_LOOKUP, /* a return, an indirect jump or call, an exit to the main loop */
	END_FLUSH, /* a write of CR3: QEMU flushes the TLB and the whole jump cache */
};

struct block {
	uint64_t pc;
	uint64_t insns;
	enum end end;
	uint64_t execs, lookups, misses; /* updated atomically: vCPUs run in parallel */
	uint64_t mems; /* bumped inline by the translated code at each load and store (API 1) */
	size_t index; /* its slot in the scoreboard of memory accesses (API 2 and later) */
};

#define MAX_VCPUS 64
#define JC_SIZE 4096

/* Per vCPU: its jump cache (the guest pc of each entry) and the block it ran last. */
static struct vcpu {
	uint64_t jc[JC_SIZE];
	struct block *prev;
} vcpus[MAX_VCPUS];

/* Open addressing on (pc, insns); a block is never removed, so pointers stay valid. */
#define TABLE_SIZE (1u << 22)
static struct block **table;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const char *out_path = "tbprof.out";

#if QEMU_PLUGIN_VERSION >= 2
/* One element per vCPU: a counter of memory accesses per block, by the block's index. */
#define MAX_BLOCKS (1u << 20)
static struct qemu_plugin_scoreboard *mem_board;
static size_t n_blocks;

static qemu_plugin_u64 mem_counter(const struct block *b)
{
	return (qemu_plugin_u64){ mem_board, b->index * sizeof(uint64_t) };
}
#endif

static uint64_t mem_accesses(const struct block *b)
{
#if QEMU_PLUGIN_VERSION >= 2
	return b->index < MAX_BLOCKS ? qemu_plugin_u64_sum(mem_counter(b)) : 0;
#else
	return b->mems;
#endif
}

/* tb_jmp_cache_hash_func() of QEMU 7.2 for softmmu (accel/tcg/tb-hash.h), 4 KiB pages. */
static unsigned int jc_hash(uint64_t pc)
{
	uint64_t tmp = pc ^ (pc >> 6);

	return ((tmp >> 6) & 0xfc0) | (tmp & 0x3f);
}

static void write_out(qemu_plugin_id_t id, void *data)
{
	FILE *f = fopen(out_path, "w");

	if (!f) {
		perror(out_path);
		return;
	}
	for (size_t i = 0; i < TABLE_SIZE; i++)
		if (table[i] && table[i]->execs)
			fprintf(f, "%" PRIx64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
				table[i]->pc, table[i]->insns, table[i]->execs, table[i]->lookups,
				table[i]->misses, mem_accesses(table[i]));
	fclose(f);
}

static struct block *lookup(uint64_t pc, uint64_t insns)
{
	uint64_t h = (pc * 0x9e3779b97f4a7c15ull) ^ insns;
	struct block *b = NULL;

	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < TABLE_SIZE; i++) {
		size_t k = (h + i) & (TABLE_SIZE - 1);

		if (!table[k]) {
			b = calloc(1, sizeof(*b));
			if (b) {
				b->pc = pc;
				b->insns = insns;
				b->end = END_DIRECT;
#if QEMU_PLUGIN_VERSION >= 2
				/* Past MAX_BLOCKS a block's accesses are not counted (reported 0). */
				b->index = n_blocks < MAX_BLOCKS ? n_blocks++ : MAX_BLOCKS;
#endif
				table[k] = b;
			}
			break;
		}
		if (table[k]->pc == pc && table[k]->insns == insns) {
			b = table[k];
			break;
		}
	}
	pthread_mutex_unlock(&lock);
	return b;
}

/* How a block whose last instruction disassembles to `insn` ends. */
static enum end classify(const char *insn)
{
	static const char *const exits[] = {
		"ret", "lret", "iret", "syscall", "sysret", "sysexit", "int", "ud2", "hlt",
		"sti", "popf", "stac", "clac", "wrmsr", "pause", "lgdt", "lidt", "ltr",
	};

	if (strstr(insn, "%cr3"))
		return END_FLUSH;
	if ((!strncmp(insn, "jmp", 3) || !strncmp(insn, "call", 4)) && strchr(insn, '*'))
		return END_LOOKUP;
	for (size_t i = 0; i < sizeof(exits) / sizeof(exits[0]); i++)
		if (!strncmp(insn, exits[i], strlen(exits[i])))
			return END_LOOKUP;
	/* Any other write of a control register ends the block too. */
	if (!strncmp(insn, "mov", 3) && strstr(insn, ",%cr"))
		return END_LOOKUP;
	return END_DIRECT;
}

static void executed(unsigned int cpu, void *data)
{
	struct block *b = data, *prev;
	struct vcpu *v;

	__atomic_fetch_add(&b->execs, 1, __ATOMIC_RELAXED);
	if (cpu >= MAX_VCPUS)
		return;
	v = &vcpus[cpu];
	prev = v->prev;
	v->prev = b;
	if (prev && prev->end == END_FLUSH)
		memset(v->jc, 0, sizeof(v->jc));
	/* Chained: a direct jump to the page its block starts on. */
	if (prev && prev->end == END_DIRECT && !((prev->pc ^ b->pc) & ~0xfffull))
		return;
	__atomic_fetch_add(&b->lookups, 1, __ATOMIC_RELAXED);
	if (v->jc[jc_hash(b->pc)] != b->pc) {
		v->jc[jc_hash(b->pc)] = b->pc;
		__atomic_fetch_add(&b->misses, 1, __ATOMIC_RELAXED);
	}
}

static void translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	size_t n = qemu_plugin_tb_n_insns(tb);
	struct block *b = lookup(qemu_plugin_tb_vaddr(tb), n);
	char *insn;

	if (!b)
		return;
	insn = n ? qemu_plugin_insn_disas(qemu_plugin_tb_get_insn(tb, n - 1)) : NULL;
	if (insn) {
		b->end = classify(insn);
		free(insn);
	}
	qemu_plugin_register_vcpu_tb_exec_cb(tb, executed, QEMU_PLUGIN_CB_NO_REGS, b);
	for (size_t i = 0; i < n; i++) {
		struct qemu_plugin_insn *qi = qemu_plugin_tb_get_insn(tb, i);
#if QEMU_PLUGIN_VERSION >= 2
		if (b->index < MAX_BLOCKS)
			qemu_plugin_register_vcpu_mem_inline_per_vcpu(qi, QEMU_PLUGIN_MEM_RW,
								      QEMU_PLUGIN_INLINE_ADD_U64,
								      mem_counter(b), 1);
#else
		qemu_plugin_register_vcpu_mem_inline(qi, QEMU_PLUGIN_MEM_RW,
						     QEMU_PLUGIN_INLINE_ADD_U64, &b->mems, 1);
#endif
	}
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
					   int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		if (strncmp(argv[i], "out=", 4) == 0) {
			out_path = argv[i] + 4;
		} else {
			fprintf(stderr, "tbprof: unknown argument %s\n", argv[i]);
			return -1;
		}
	}
	table = calloc(TABLE_SIZE, sizeof(*table));
	if (!table)
		return -1;
#if QEMU_PLUGIN_VERSION >= 2
	mem_board = qemu_plugin_scoreboard_new(MAX_BLOCKS * sizeof(uint64_t));
	if (!mem_board)
		return -1;
#endif
	qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
	qemu_plugin_register_atexit_cb(id, write_out, NULL);
	return 0;
}
