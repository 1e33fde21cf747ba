/*
 * dirty: keeps rewriting guest memory at a steady rate, to exercise live migration.
 *
 * Usage: dirty <MiB per second> [working set MiB]
 * It allocates the working set (default: the rate, at least 16 MiB, at most 128 MiB),
 * touches it once, then writes one word into each 4 KiB page in turn, paced in 10 ms
 * slices so that <rate> MiB of distinct pages are dirtied every second, until killed.
 * Slices missed while the vCPU is paused or throttled are not made up for.
 * It prints one start line, and keeps /run/dirty.stat current ("pid rate_mib
 * working_set_mib dirtied_mib elapsed_ms", rewritten every second) so that a caller
 * can see it running and compute the rate it achieved.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define SLICE_NS 10000000L

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double started_s;

static void write_stat(long rate, long set_mib, uint64_t pages) {
  char line[160];
  int len = snprintf(line, sizeof line, "%d %ld %ld %llu %llu\n", (int)getpid(), rate, set_mib,
                     (unsigned long long)(pages * PAGE / (1024u * 1024u)),
                     (unsigned long long)((now_s() - started_s) * 1000.0));
  int fd = open("/run/dirty.stat.tmp", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  ssize_t w = write(fd, line, (size_t)len);
  (void)w;
  close(fd);
  rename("/run/dirty.stat.tmp", "/run/dirty.stat");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: dirty <MiB/s> [working set MiB]\n");
    return 2;
  }
  long rate = strtol(argv[1], NULL, 10);
  long set_mib = argc > 2 ? strtol(argv[2], NULL, 10) : rate;
  if (rate < 1) rate = 1;
  if (set_mib < 16) set_mib = 16;
  if (argc <= 2 && set_mib > 128) set_mib = 128;
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);

  size_t pages = (size_t)set_mib * 1024u * 1024u / PAGE;
  volatile uint64_t *mem = NULL;
  if (posix_memalign((void **)&mem, PAGE, pages * PAGE) != 0) {
    fprintf(stderr, "dirty: cannot allocate %ld MiB\n", set_mib);
    return 1;
  }
  memset((void *)mem, 1, pages * PAGE);
  printf("dirty: pid=%d rate_mib_s=%ld working_set_mib=%ld\n", (int)getpid(), rate, set_mib);
  fflush(stdout);

  /* Each 10 ms slice dirties its share of the rate. Slices the process missed (the
   * vCPU was paused or throttled, e.g. by auto-converge) are dropped, not caught up:
   * like a real workload, it dirties less when it gets less CPU. */
  const double pages_per_slice = (double)rate * 1024.0 * 1024.0 / PAGE * (double)SLICE_NS / 1e9;
  double carry = 0;
  uint64_t done = 0, value = 0;
  size_t cursor = 0;
  struct timespec next, now;
  clock_gettime(CLOCK_MONOTONIC, &next);
  started_s = now_s();
  double last_stat = started_s;
  write_stat(rate, set_mib, 0);
  while (!stop) {
    carry += pages_per_slice;
    uint64_t batch = (uint64_t)carry;
    carry -= (double)batch;
    value++;
    for (uint64_t i = 0; i < batch; i++) {
      mem[cursor * (PAGE / sizeof(uint64_t))] = value;
      cursor = (cursor + 1) % pages;
    }
    done += batch;
    double t = now_s();
    if (t - last_stat >= 1.0) {
      write_stat(rate, set_mib, done);
      last_stat = t;
    }
    next.tv_nsec += SLICE_NS;
    if (next.tv_nsec >= 1000000000L) {
      next.tv_nsec -= 1000000000L;
      next.tv_sec++;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    double behind = (double)(now.tv_sec - next.tv_sec) + (double)(now.tv_nsec - next.tv_nsec) / 1e9;
    if (behind > (double)SLICE_NS / 1e9) next = now;
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
  }
  unlink("/run/dirty.stat");
  return 0;
}
