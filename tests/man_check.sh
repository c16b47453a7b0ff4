#!/bin/sh
# The manual pages render cleanly: mandoc -T lint reports no warning, and
# the rendered text has no nested quotes (a second ‘ before the first
# closes, as two .Ql macros on one line give: ‘90m, ‘24h’’).
# Exit status: 0 passed, 77 skipped (no mandoc), 1 failed.
top=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
command -v mandoc >/dev/null 2>&1 || { echo "man_check: SKIP: no mandoc"; exit 77; }
# col and grep must see UTF-8 characters, whatever the caller's locale.
LC_ALL=C.UTF-8; export LC_ALL
status=0
for page in "$top"/man/*.[1-8]; do
	name=$(basename "$page")
	# -W warning: warnings and worse; STYLE notes (unknown Xr pages) are not.
	lint=$(mandoc -T lint -W warning "$page" 2>&1 | grep -v 'outdated mandoc.db')
	if [ -n "$lint" ]; then
		printf '%s\n' "$lint"
		echo "man_check: FAIL: $name: mandoc -T lint warns (above)"
		status=1
	fi
	nested=$(mandoc -T utf8 "$page" 2>/dev/null | col -b | grep -n '‘[^’]*‘')
	if [ -n "$nested" ]; then
		printf '%s\n' "$nested"
		echo "man_check: FAIL: $name: nested quotes (above): one .Ql, .Dq or .Sq a line"
		status=1
	fi
done
[ $status -eq 0 ] && echo "man_check: every page renders without warnings or nested quotes"
exit $status
