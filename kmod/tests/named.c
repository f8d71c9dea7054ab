// SPDX-License-Identifier: GPL-2.0-only
/*
 * named N: start N processes that exec this program again as
 * "ptc-named child <i>" and exit at once (they live well under a millisecond
 * on real hardware), and reap them all only after the last was started: by
 * the time a reader of /proc looks, every one is gone.  Static, so the exec
 * costs no dynamic loading.  Prints "started N" when done.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	char self[4096], idx[16];
	ssize_t n;
	int i, count;

	if (argc > 1 && !strcmp(argv[1], "child"))
		return 0;
	count = argc > 1 ? atoi(argv[1]) : 1000;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0)
		return 1;
	self[n] = 0;
	for (i = 0; i < count; i++) {
		pid_t pid = fork();

		if (pid == 0) {
			snprintf(idx, sizeof(idx), "%d", i);
			execl(self, "ptc-named", "child", idx, (char *)NULL);
			_exit(127);
		}
		if (pid < 0)
			return 1;
	}
	while (wait(NULL) > 0)
		;
	printf("started %d\n", count);
	return 0;
}
