/* execstorm RATE SECONDS PATH: posix_spawn PATH at a fixed rate, reap children,
 * print "execs=N seconds=S rate=R". The pacing is absolute (no drift). */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <errno.h>

extern char **environ;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: execstorm RATE SECONDS PATH\n");
		return 2;
	}
	double rate = atof(argv[1]), seconds = atof(argv[2]);
	char *child_argv[] = { argv[3], NULL };
	long total = (long)(rate * seconds), done = 0;
	double start = now();
	for (long i = 0; i < total; i++) {
		double due = start + i / rate;
		double t = now();
		if (due > t) {
			struct timespec ts = { (time_t)(due - t), (long)(((due - t) - (time_t)(due - t)) * 1e9) };
			nanosleep(&ts, NULL);
		}
		pid_t pid;
		if (posix_spawn(&pid, argv[3], NULL, NULL, child_argv, environ) == 0)
			done++;
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	}
	while (wait(NULL) > 0 || errno == EINTR)
		;
	double el = now() - start;
	printf("execs=%ld seconds=%.3f rate=%.1f\n", done, el, done / el);
	return 0;
}
