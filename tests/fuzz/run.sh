#!/bin/sh
# Runs libFuzzer binaries built by `make fuzz-build`, each for SECONDS.
#   run.sh BINDIR FUZZDIR SECONDS TARGET...
# With FUZZ_RUNS=N (and FUZZ_SEED) each target runs exactly N inputs from a
# fixed seed instead: the same inputs on every machine, so a CI smoke run
# never fails by chance on a finding a faster machine would reach.
# New inputs go to BINDIR/work/TARGET (the checked-in corpus is only read),
# crashes to FUZZDIR/crashes/TARGET-*, each run's output to
# BINDIR/fuzz_TARGET.log.  Exits 1 if any target found a problem.
set -u
bindir=$1
fuzzdir=$2
secs=$3
shift 3
mkdir -p "$fuzzdir/crashes"
# Leaks inside system libraries that no code of ours can avoid.
LSAN_OPTIONS="suppressions=$fuzzdir/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export LSAN_OPTIONS
failed=
for t in "$@"; do
	# Settings and flows files are small; API bodies and records are not.
	case $t in
	config|flows|render) maxlen=16384 ;;
	*) maxlen=65536 ;;
	esac
	# libconfig has no frame pointers: without the slow unwinder its
	# leaks have no stack for lsan.supp to match.
	asan=${ASAN_OPTIONS:-}
	[ "$t" = config ] && asan="${asan:+$asan:}fast_unwind_on_malloc=0"
	mkdir -p "$bindir/work/$t"
	log=$bindir/fuzz_$t.log
	if [ -n "${FUZZ_RUNS:-}" ]; then what="${FUZZ_RUNS} runs, seed ${FUZZ_SEED:-1}"; else what="${secs}s"; fi
	echo "fuzz_$t: $what, max_len $maxlen"
	if [ -n "${FUZZ_RUNS:-}" ]; then
		limit="-runs=$FUZZ_RUNS -seed=${FUZZ_SEED:-1}"
	else
		limit="-max_total_time=$secs"
	fi
	# shellcheck disable=SC2086
	if ASAN_OPTIONS=$asan "$bindir/fuzz_$t" $limit -dict="$fuzzdir/$t.dict" \
	    -max_len="$maxlen" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
	    -artifact_prefix="$fuzzdir/crashes/$t-" \
	    "$bindir/work/$t" "$fuzzdir/corpus/$t" >"$log" 2>&1; then
		grep -E '^#[0-9]+' "$log" | tail -n 1
	else
		failed="$failed $t"
		tail -n 50 "$log"
	fi
done
if [ -n "$failed" ]; then
	echo "fuzz: problems found by:$failed (inputs in $fuzzdir/crashes/)" >&2
	exit 1
fi
