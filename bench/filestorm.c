/* filestorm SECONDS WRITERS DIR [RATE]: each writer opens, writes 64 bytes and
 * closes its own file in DIR in a loop (rewrite in place, no O_TRUNC, like the
 * peers' W4), as fast as it can or at RATE ops/s per writer; prints
 * "ops=N seconds=S rate=R". */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: filestorm SECONDS WRITERS DIR [RATE]\n");
		return 2;
	}
	double seconds = atof(argv[1]);
	double rate = argc == 5 ? atof(argv[4]) : 0;
	int writers = atoi(argv[2]);
	long *counts = mmap(NULL, sizeof(long) * writers, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	double start = now();
	for (int w = 0; w < writers; w++) {
		if (fork() == 0) {
			char path[4096], buf[64];
			memset(buf, 'x', sizeof(buf));
			snprintf(path, sizeof(path), "%s/storm-%d", argv[3], w);
			long n = 0;
			double end = start + seconds;
			while (1) {
				if (rate > 0) {
					double due = start + n / rate, t = now();
					if (due > t) {
						struct timespec ts = { (time_t)(due - t), (long)(((due - t) - (time_t)(due - t)) * 1e9) };
						nanosleep(&ts, NULL);
					}
				}
				for (int k = 0; k < (rate > 0 ? 16 : 256); k++) {
					int fd = open(path, O_WRONLY | O_CREAT, 0600);
					if (fd < 0)
						_exit(1);
					if (write(fd, buf, sizeof(buf)) < 0)
						_exit(1);
					close(fd);
					n++;
				}
				if (now() >= end)
					break;
			}
			counts[w] = n;
			_exit(0);
		}
	}
	while (wait(NULL) > 0)
		;
	double el = now() - start;
	long total = 0;
	for (int w = 0; w < writers; w++)
		total += counts[w];
	printf("ops=%ld seconds=%.3f rate=%.1f\n", total, el, total / el);
	return 0;
}
