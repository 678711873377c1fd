// SPDX-License-Identifier: GPL-2.0
/*
 * A QEMU TCG plugin for `make profile`: counts how often each translation block runs, and
 * writes "<guest pc> <instructions> <executions>" per block to the file given as out=PATH when
 * QEMU exits. Under TCG the time a path takes follows the number of blocks it executes (each
 * is a dispatch), so `scripts/tbprof/report` turns this into blocks per operation per function.
 *
 * Built by scripts/profile against the qemu-plugin.h of the installed QEMU.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

struct block {
	uint64_t pc;
	uint64_t insns;
	uint64_t execs; /* bumped inline by the translated code */
};

/* Open addressing on (pc, insns); a block is never removed, so pointers stay valid. */
#define TABLE_SIZE (1u << 22)
static struct block **table;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const char *out_path = "tbprof.out";

static void write_out(qemu_plugin_id_t id, void *data)
{
	FILE *f = fopen(out_path, "w");

	if (!f) {
		perror(out_path);
		return;
	}
	for (size_t i = 0; i < TABLE_SIZE; i++)
		if (table[i] && table[i]->execs)
			fprintf(f, "%" PRIx64 " %" PRIu64 " %" PRIu64 "\n", table[i]->pc,
				table[i]->insns, table[i]->execs);
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

static void translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	struct block *b = lookup(qemu_plugin_tb_vaddr(tb), qemu_plugin_tb_n_insns(tb));

	if (b)
		qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->execs, 1);
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
	qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
	qemu_plugin_register_atexit_cb(id, write_out, NULL);
	return 0;
}
