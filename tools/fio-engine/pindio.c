// SPDX-License-Identifier: GPL-2.0
/*
 * fio I/O engine "pindio": fio's reads and writes go through /dev/pindio's own direct-I/O path,
 * so that fio compares it with psync and io_uring on the same device, in the same run.
 *
 *   fio --ioengine=external:/lib/pindio-fio.so --filename=/dev/nullb1 --direct=1 ...
 *
 * One I/O in flight (iodepth=1): PINDIO_IOC_DIO, one ioctl per I/O, as pread(2) is for psync.
 * More (iodepth=N): the I/Os fio queues go down together in one PINDIO_IOC_DIO_BATCH, at most
 * PINDIO_DIO_BATCH_MAX at a time (their bios in flight together, the call waiting for all); the
 * batch is done when the call returns, and fio reaps it from getevents. fio commits after every
 * I/O it queues (iodepth_batch_submit=1 by default), which for an engine whose submission waits
 * would be QD1: the engine submits when its N slots are full, or when fio waits for events.
 * Each I/O's issue time is the call's start, so fio's completion latency is the call's.
 *
 * Built against the headers of the fio it is loaded into (the same version, configured as
 * Debian's package is: scripts/fio-engine), and against the one ABI header,
 * include/uapi/linux/pindio.h. It uses only fio's exported engine API (io_u, fio_file,
 * ioengine_ops; thread_data's io_ops_data and options, which no configure option moves).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "fio.h"

#include <linux/pindio.h>

struct pindio_data {
	int dev;			/* /dev/pindio */
	unsigned int depth;		/* slots below */
	unsigned int queued;		/* io_us waiting for commit */
	unsigned int events;		/* io_us done, waiting for getevents */
	struct io_u **queue;		/* [depth] */
	struct io_u **done;		/* [depth] */
	struct pindio_dio *reqs;	/* [depth] */
};

static void pindio_fill(struct pindio_dio *req, const struct io_u *io_u)
{
	memset(req, 0, sizeof(*req));
	req->size = sizeof(*req);
	req->flags = io_u->ddir == DDIR_WRITE ? PINDIO_DIO_WRITE : 0;
	req->fd = io_u->file->fd;
	req->offset = io_u->offset;
	req->buf = (uintptr_t)io_u->xfer_buf;
	req->len = io_u->xfer_buflen;
}

/* All or nothing: the bytes of the whole I/O, or -errno (PINDIO_IOC_DIO's contract). */
static void pindio_account(struct io_u *io_u, long long result)
{
	if (result < 0) {
		io_u->error = -result;
	} else if ((unsigned long long)result != io_u->xfer_buflen) {
		io_u->error = EIO;
	} else {
		io_u->resid = 0;
		io_u->error = 0;
	}
}

/* The io_us that are not reads or writes: syncs by fsync(2), the rest refused. */
static bool pindio_other(struct io_u *io_u)
{
	if (io_u->ddir == DDIR_READ || io_u->ddir == DDIR_WRITE)
		return false;
	if (ddir_sync(io_u->ddir))
		io_u->error = fsync(io_u->file->fd) ? errno : 0;
	else
		io_u->error = EINVAL;
	return true;
}

static enum fio_q_status fio_pindio_queue(struct thread_data *td, struct io_u *io_u)
{
	struct pindio_data *pd = td->io_ops_data;
	struct pindio_dio req;
	int ret;

	fio_ro_check(td, io_u);
	if (pindio_other(io_u))
		return FIO_Q_COMPLETED;
	if (pd->depth == 1) {
		pindio_fill(&req, io_u);
		ret = ioctl(pd->dev, PINDIO_IOC_DIO, &req);
		pindio_account(io_u, ret < 0 ? -errno : ret);
		return FIO_Q_COMPLETED;
	}
	if (pd->events || pd->queued == pd->depth)
		return FIO_Q_BUSY;
	pd->queue[pd->queued++] = io_u;
	return FIO_Q_QUEUED;
}

/* The queued io_us, in one PINDIO_IOC_DIO_BATCH; done (to be reaped) when it returns. */
static void pindio_submit(struct thread_data *td)
{
	struct pindio_data *pd = td->io_ops_data;
	struct pindio_dio_batch batch;
	struct timespec now;
	unsigned int i, nr = pd->queued;

	if (!nr || pd->events)
		return;
	for (i = 0; i < nr; i++)
		pindio_fill(&pd->reqs[i], pd->queue[i]);
	if (fio_fill_issue_time(td)) {
		fio_gettime(&now, NULL);
		for (i = 0; i < nr; i++) {
			memcpy(&pd->queue[i]->issue_time, &now, sizeof(now));
			io_u_queued(td, pd->queue[i]);
		}
	}
	io_u_mark_submit(td, nr);
	memset(&batch, 0, sizeof(batch));
	batch.size = sizeof(batch);
	batch.nr = nr;
	batch.reqs = (uintptr_t)pd->reqs;
	batch.entry_size = sizeof(pd->reqs[0]);
	if (ioctl(pd->dev, PINDIO_IOC_DIO_BATCH, &batch) < 0) {
		/* The call itself failed: no request was started (or, EFAULT, results lost). */
		int err = errno;

		for (i = 0; i < nr; i++)
			pd->queue[i]->error = err;
	} else {
		for (i = 0; i < nr; i++)
			pindio_account(pd->queue[i], pd->reqs[i].result);
	}
	memcpy(pd->done, pd->queue, nr * sizeof(pd->queue[0]));
	pd->events = nr;
	pd->queued = 0;
}

/* A full batch goes down at once; a partial one waits for more, or for fio's getevents. */
static int fio_pindio_commit(struct thread_data *td)
{
	struct pindio_data *pd = td->io_ops_data;

	if (pd->queued == pd->depth)
		pindio_submit(td);
	return 0;
}

static int fio_pindio_getevents(struct thread_data *td, unsigned int min,
				unsigned int max, const struct timespec *t)
{
	struct pindio_data *pd = td->io_ops_data;
	int ret;

	if (pd->events < min && pd->queued)
		pindio_submit(td);
	ret = pd->events;
	pd->events = 0;
	return ret;
}

static struct io_u *fio_pindio_event(struct thread_data *td, int event)
{
	struct pindio_data *pd = td->io_ops_data;

	return pd->done[event];
}

static void fio_pindio_cleanup(struct thread_data *td)
{
	struct pindio_data *pd = td->io_ops_data;

	if (!pd)
		return;
	if (pd->dev >= 0)
		close(pd->dev);
	free(pd->queue);
	free(pd->done);
	free(pd->reqs);
	free(pd);
	td->io_ops_data = NULL;
}

static int fio_pindio_init(struct thread_data *td)
{
	struct pindio_data *pd = calloc(1, sizeof(*pd));

	if (!pd)
		return 1;
	td->io_ops_data = pd;
	pd->depth = td->o.iodepth ? td->o.iodepth : 1;
	if (pd->depth > PINDIO_DIO_BATCH_MAX)
		pd->depth = PINDIO_DIO_BATCH_MAX;
	pd->dev = open("/dev/pindio", O_RDWR | O_CLOEXEC);
	if (pd->dev < 0) {
		log_err("pindio: open /dev/pindio: %s\n", strerror(errno));
		fio_pindio_cleanup(td);
		return 1;
	}
	pd->queue = calloc(pd->depth, sizeof(*pd->queue));
	pd->done = calloc(pd->depth, sizeof(*pd->done));
	pd->reqs = calloc(pd->depth, sizeof(*pd->reqs));
	if (!pd->queue || !pd->done || !pd->reqs) {
		fio_pindio_cleanup(td);
		return 1;
	}
	if (pd->depth == 1)
		td->io_ops->flags |= FIO_SYNCIO;
	else
		td->io_ops->flags |= FIO_ASYNCIO_SETS_ISSUE_TIME;
	td_set_ioengine_flags(td);
	return 0;
}

/* fio finds the engine by this symbol (ioengine=external:path). */
struct ioengine_ops ioengine = {
	.name		= "pindio",
	.version	= FIO_IOOPS_VERSION,
	.flags		= FIO_RAWIO,
	.init		= fio_pindio_init,
	.cleanup	= fio_pindio_cleanup,
	.queue		= fio_pindio_queue,
	.commit		= fio_pindio_commit,
	.getevents	= fio_pindio_getevents,
	.event		= fio_pindio_event,
	.open_file	= generic_open_file,
	.close_file	= generic_close_file,
	.get_file_size	= generic_get_file_size,
};
