/* metrics: the daemon's counters and gauges in the Prometheus text
 * exposition format (version 0.0.4), for node_exporter's textfile
 * collector.  metrics_format() is pure: the daemon (daemon/loop.c) keeps
 * the numbers in a struct metrics and hands it over; metrics_write_file()
 * replaces the file atomically (temp file in the same directory, fsync,
 * rename), so the collector never reads half a file.
 *
 * Every name starts with imperai_snow_; counters end in _total, times in
 * _seconds.  man/imperai-snowd.8 (METRICS) documents each one. */
#ifndef IMPERAI_METRICS_H
#define IMPERAI_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "imperai.h"

/* Final results of a verification, in outcome label order. */
#define METRICS_NRESULTS	5	/* passed failed timed_out not_enough_questions canceled */
#define METRICS_NRISKS		4	/* enum imperai_risk: unknown verified medium high */

/* Counters decided by the engine: the daemon adds a step's counts to its
 * totals only once the step's state change is committed, so a step that
 * is discarded and decided again is not counted twice. */
struct metrics_counts {
	uint64_t	 tracked;		/* tickets that began a verification */
	uint64_t	 fields_injected;	/* link PATCHes landed */
	uint64_t	 auto_resolved;		/* resolving PATCHes that resolved */
	uint64_t	 writes[3];		/* effects done, by enum effect_kind */
	uint64_t	 outcomes[METRICS_NRESULTS][METRICS_NRISKS];
	uint64_t	 actions_completed;
	uint64_t	 actions_failed;
};

/* One remote service (a pool of http.c). */
struct metrics_service {
	const char	*name;			/* "servicenow", "imperai" */
	uint64_t	 by_status[6];		/* 0: no answer, 1..5: 1xx..5xx */
	uint64_t	 retries;
	uint64_t	 rate_limited;		/* 429 answers */
	uint64_t	 budget_waits;		/* requests held back by the own budget */
	int64_t		 last_poll_ok;		/* UNIX seconds, 0: not yet */
};

struct metrics_table {
	const char	*name;
	uint64_t	 seen;			/* records read by the poll */
	uint64_t	 sweep_runs;		/* reconciliation sweeps completed */
	uint64_t	 sweep_records;		/* records read by them */
	uint64_t	 sweep_missed;		/* tickets they found that the poll had missed */
	uint64_t	 late_records;		/* records older than watermark - overlap */
	int64_t		 late_max_lag;		/* seconds, the largest such lag */
};

struct metrics {
	const char		*version;
	int64_t			 now;		/* UNIX seconds, when formatted */
	int64_t			 started;	/* UNIX seconds */
	struct metrics_counts	 c;
	uint64_t		 write_failures[3];	/* retried or refused attempts */
	uint64_t		 tickets[TS__COUNT];	/* tracked tickets by state */
	uint64_t		 outbox;		/* pending writes */
	uint64_t		 outbox_parked;
	int64_t			 outbox_oldest;	/* decision time of the oldest, 0: none or unknown */
	const struct metrics_table *tables;
	size_t			 ntables;
	struct metrics_service	 svc[2];
	size_t			 nsvc;
};

/* Index of a final status in outcomes[] (-1 for a status that is not final). */
int metrics_result_index(enum imperai_status s);
/* Adds b to a. */
void metrics_counts_add(struct metrics_counts *a, const struct metrics_counts *b);

/* The exposition text: HELP and TYPE before each family's samples, every
 * family present (zero when nothing happened), label values escaped. */
char *metrics_format(const struct metrics *m);

/* Writes text to path atomically: path.tmp.PID in the same directory,
 * fsync, rename over path, fsync of the directory.  The file is mode 0644
 * (the collector runs as another user).  -errno with *cause naming the
 * file and the failing step. */
int metrics_write_file(const char *path, const char *text, char **cause);

#endif
