// SPDX-License-Identifier: GPL-2.0-only
/*
 * forkstorm STOPFILE COUNTFILE: fork short-lived children (every 16th execs
 * /bin/true, the others _exit(n % 3)) until STOPFILE exists, then write the
 * number of children to COUNTFILE.  Built static on the host by
 * scripts/check.sh; a Python fork is ~50 ms under QEMU TCG, this is far less.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	unsigned long n = 0;
	FILE *f;

	if (argc != 3)
		return 2;
	while ((n & 31) || access(argv[1], F_OK) != 0) {
		pid_t pid = fork();

		if (pid == 0) {
			if (n % 16 == 0)
				execl("/bin/true", "true", (char *)NULL);
			_exit(n % 3);
		}
		if (pid > 0)
			waitpid(pid, NULL, 0);
		n++;
	}
	f = fopen(argv[2], "w");
	if (!f)
		return 1;
	fprintf(f, "%lu\n", n);
	return fclose(f) ? 1 : 0;
}
