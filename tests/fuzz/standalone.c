/* standalone: runs a fuzz target once over each input file, without
 * libFuzzer, so that the corpus is a regression suite on any compiler.
 *
 *   fuzz_X_standalone [FILE|DIR]...
 *
 * A directory means every file in it, in name order.  Without arguments
 * it runs $top_srcdir/tests/fuzz/corpus/FUZZ_TARGET (what `make check`
 * does: the test harness exports top_srcdir). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

#ifndef FUZZ_TARGET
#error "FUZZ_TARGET must name the corpus directory"
#endif

/* Reads the file into a buffer of exactly its size, so that ASan sees any
 * read past the end of the input. */
static int
run_file(const char *path)
{
	FILE *f;
	struct stat st;
	uint8_t *data = NULL;
	int ret = -1;

	if ((f = fopen(path, "rb")) == NULL || fstat(fileno(f), &st) != 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		goto out;
	}
	data = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
	if (data == NULL || fread(data, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
		fprintf(stderr, "%s: short read\n", path);
		goto out;
	}
	LLVMFuzzerTestOneInput(data, (size_t)st.st_size);
	ret = 0;
out:
	free(data);
	if (f != NULL)
		fclose(f);
	return ret;
}

static int
skip_entry(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

/* Runs every regular file of dir; returns how many ran, -1 on error. */
static int
run_dir(const char *dir)
{
	struct dirent **names;
	int n, ran = 0, err = 0;

	if ((n = scandir(dir, &names, skip_entry, alphasort)) < 0) {
		fprintf(stderr, "%s: %s\n", dir, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		char path[4096];
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		if (!err && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			if (run_file(path) == 0)
				ran++;
			else
				err = 1;
		}
		free(names[i]);
	}
	free(names);
	return err ? -1 : ran;
}

static int
run_path(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode))
		return run_dir(path);
	return run_file(path) == 0 ? 1 : -1;
}

int
main(int argc, char **argv)
{
	char def[4096];
	const char *top = getenv("top_srcdir");
	int total = 0, n;

	if (argc < 2) {
		if (top == NULL) {
			fprintf(stderr, "usage: %s FILE|DIR... (or set top_srcdir)\n", argv[0]);
			return 2;
		}
		snprintf(def, sizeof(def), "%s/tests/fuzz/corpus/%s", top, FUZZ_TARGET);
		total = run_path(def);
	}
	for (int i = 1; i < argc && total >= 0; i++) {
		if ((n = run_path(argv[i])) < 0)
			total = -1;
		else
			total += n;
	}
	if (total < 0)
		return 1;
	/* An empty or missing corpus must not pass as a green test. */
	if (total == 0) {
		fprintf(stderr, "%s: no inputs\n", FUZZ_TARGET);
		return 1;
	}
	printf("%s: %d inputs ran\n", FUZZ_TARGET, total);
	return 0;
}
