/* outage: the decisions behind quiet outages, on a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "outage.h"

#define SEC	1000

/* Polls every interval_ms for span_ms, all failing, then one success:
 * the lines said (warnings, and the notice). */
static int
outage_run(struct outage *o, int64_t start, int64_t span_ms, int64_t interval_ms, int *back)
{
	int64_t down = 0, t;
	uint64_t n = 0;
	int warnings = 0;

	for (t = start; t < start + span_ms; t += interval_ms)
		if (outage_failed(o, t, OUTAGE_REMIND_MS) != OUTAGE_QUIET)
			warnings++;
	*back = outage_ok(o, t, &down, &n) == OUTAGE_BACK;
	return warnings;
}

static void
test_a_45_second_outage_of_both_services_at_1_s_polls_says_4_lines_at_most(void **state)
{
	struct outage snow = { 0 }, imp = { 0 };
	int back_snow, back_imp, warnings;

	(void)state;
	warnings = outage_run(&snow, 1000, 45 * SEC, SEC, &back_snow) +
	    outage_run(&imp, 1000, 45 * SEC, SEC, &back_imp);
	assert_int_equal(warnings, 2);
	assert_true(back_snow && back_imp);
	assert_true(warnings + back_snow + back_imp <= 4);
}

static void
test_down_then_quiet_then_a_reminder_every_remind_interval(void **state)
{
	struct outage o = { 0 };

	(void)state;
	assert_int_equal(outage_failed(&o, 10 * SEC, 60 * SEC), OUTAGE_DOWN);
	assert_int_equal(outage_failed(&o, 11 * SEC, 60 * SEC), OUTAGE_QUIET);
	assert_int_equal(outage_failed(&o, 69 * SEC, 60 * SEC), OUTAGE_QUIET);
	assert_int_equal(outage_failed(&o, 70 * SEC, 60 * SEC), OUTAGE_STILL_DOWN);
	assert_int_equal(outage_failed(&o, 71 * SEC, 60 * SEC), OUTAGE_QUIET);
	assert_int_equal(outage_failed(&o, 130 * SEC, 60 * SEC), OUTAGE_STILL_DOWN);
	assert_int_equal(o.failures, 6);
	assert_int_equal(o.since_ms, 10 * SEC);
}

static void
test_back_says_how_long_and_how_many_then_resets(void **state)
{
	struct outage o = { 0 };
	int64_t down = -1;
	uint64_t n = 0;

	(void)state;
	assert_int_equal(outage_ok(&o, 5 * SEC, &down, &n), OUTAGE_QUIET);
	assert_int_equal(down, -1);
	outage_failed(&o, 5 * SEC, OUTAGE_REMIND_MS);
	outage_failed(&o, 6 * SEC, OUTAGE_REMIND_MS);
	outage_failed(&o, 7 * SEC, OUTAGE_REMIND_MS);
	assert_int_equal(outage_ok(&o, 8 * SEC, &down, &n), OUTAGE_BACK);
	assert_int_equal(down, 3 * SEC);
	assert_int_equal(n, 3);
	assert_int_equal(outage_ok(&o, 9 * SEC, &down, &n), OUTAGE_QUIET);
	/* The next outage is new: it warns again. */
	assert_int_equal(outage_failed(&o, 10 * SEC, OUTAGE_REMIND_MS), OUTAGE_DOWN);
}

static void
test_a_failure_at_time_zero_still_counts_as_down(void **state)
{
	struct outage o = { 0 };
	int64_t down;
	uint64_t n;

	(void)state;
	assert_int_equal(outage_failed(&o, 0, OUTAGE_REMIND_MS), OUTAGE_DOWN);
	assert_int_equal(outage_failed(&o, 1, OUTAGE_REMIND_MS), OUTAGE_QUIET);
	assert_int_equal(outage_ok(&o, 2 * SEC, &down, &n), OUTAGE_BACK);
	assert_int_equal(n, 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_45_second_outage_of_both_services_at_1_s_polls_says_4_lines_at_most),
		cmocka_unit_test(test_down_then_quiet_then_a_reminder_every_remind_interval),
		cmocka_unit_test(test_back_says_how_long_and_how_many_then_resets),
		cmocka_unit_test(test_a_failure_at_time_zero_still_counts_as_down),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
