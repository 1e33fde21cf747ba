/*
 * kv-counter: the KeyVirt test guest's liveness workload.
 *
 * Every interval it writes one record "KV boot=<id> n=<counter> t=<uptime ms>\n" to
 * the first usable disk (one 512-byte sector per record, in a ring at the start of the
 * disk, O_DIRECT + O_DSYNC so the record is on the host side before it is printed),
 * then prints the same record on stdout (the serial console). Whatever the console
 * shows is therefore already on the disk, even if QEMU is killed right after.
 *
 * Usage: kv-counter [-i interval_ms] [disk...]
 * A disk is used only when it opens read-write and its first 64 KiB hold nothing but
 * zero sectors or earlier records: a seed image or a disk with data is never touched.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define SECTOR 512
#define RING_MAX 8192 /* 4 MiB of records at most */
#define PROBE_BYTES (64 * 1024)
#define RECORD_PREFIX "KV boot="

static volatile sig_atomic_t stop;

static void on_term(int sig) { (void)sig; stop = 1; }

static void read_boot_id(char *out, size_t len) {
  char raw[64] = {0};
  int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY);
  if (fd >= 0) {
    ssize_t r = read(fd, raw, sizeof raw - 1);
    (void)r;
    close(fd);
  }
  size_t j = 0;
  for (size_t i = 0; raw[i] && j + 1 < len && j < 16; i++) {
    char c = raw[i];
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) out[j++] = c;
  }
  if (j == 0) {
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    j = (size_t)snprintf(out, len, "%08x%08x", (unsigned)rand(), (unsigned)rand());
  }
  out[j] = '\0';
}

static uint64_t uptime_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int sector_is_ours(const unsigned char *s) {
  if (memcmp(s, RECORD_PREFIX, strlen(RECORD_PREFIX)) == 0) return 1;
  for (int i = 0; i < SECTOR; i++)
    if (s[i] != 0) return 0;
  return 1;
}

/* Opens the disk for records, or returns -1 (with a console note) when it must not be used. */
static int open_disk(const char *path, uint64_t *ring) {
  int fd = open(path, O_RDWR | O_DIRECT | O_DSYNC);
  if (fd < 0) {
    printf("keyvirt-guest: disk %s not writable (%s)\n", path, strerror(errno));
    return -1;
  }
  uint64_t bytes = 0;
  if (ioctl(fd, BLKGETSIZE64, &bytes) != 0 || bytes < SECTOR) {
    close(fd);
    return -1;
  }
  size_t probe = bytes < PROBE_BYTES ? (size_t)(bytes / SECTOR) * SECTOR : PROBE_BYTES;
  unsigned char *buf = NULL;
  if (posix_memalign((void **)&buf, 4096, PROBE_BYTES) != 0) {
    close(fd);
    return -1;
  }
  ssize_t got = pread(fd, buf, probe, 0);
  int usable = got == (ssize_t)probe;
  for (size_t off = 0; usable && off < probe; off += SECTOR) usable = sector_is_ours(buf + off);
  free(buf);
  if (!usable) {
    printf("keyvirt-guest: disk %s holds other data, records not written there\n", path);
    close(fd);
    return -1;
  }
  *ring = bytes / SECTOR < RING_MAX ? bytes / SECTOR : RING_MAX;
  return fd;
}

int main(int argc, char **argv) {
  long interval_ms = 200;
  int first_disk = 1;
  if (argc > 2 && strcmp(argv[1], "-i") == 0) {
    interval_ms = strtol(argv[2], NULL, 10);
    if (interval_ms < 10) interval_ms = 10;
    first_disk = 3;
  }
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  setvbuf(stdout, NULL, _IOLBF, 0);

  char boot[40];
  read_boot_id(boot, sizeof boot);

  int fd = -1;
  uint64_t ring = 0;
  const char *disk = NULL;
  for (int i = first_disk; i < argc && fd < 0; i++) {
    fd = open_disk(argv[i], &ring);
    if (fd >= 0) disk = argv[i];
  }
  printf("keyvirt-guest: counter boot=%s disk=%s interval_ms=%ld\n", boot, disk ? disk : "none",
         interval_ms);

  unsigned char *sector = NULL;
  if (posix_memalign((void **)&sector, 4096, SECTOR) != 0) return 1;
  int disk_error_reported = 0;
  struct timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  for (uint64_t n = 1; !stop; n++) {
    memset(sector, 0, SECTOR);
    int len = snprintf((char *)sector, SECTOR, "KV boot=%s n=%llu t=%llu\n", boot,
                       (unsigned long long)n, (unsigned long long)uptime_ms());
    if (fd >= 0) {
      ssize_t w = pwrite(fd, sector, SECTOR, (off_t)((n % ring) * SECTOR));
      if (w != SECTOR && !disk_error_reported) {
        printf("keyvirt-guest: disk write failed (%s)\n", w < 0 ? strerror(errno) : "short write");
        disk_error_reported = 1;
      }
    }
    fwrite(sector, 1, (size_t)len, stdout);
    fflush(stdout);
    next.tv_nsec += interval_ms * 1000000L;
    while (next.tv_nsec >= 1000000000L) {
      next.tv_nsec -= 1000000000L;
      next.tv_sec++;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR && !stop) {
    }
    /* after a long stall (paused VM, migration) do not burst to catch up */
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec > next.tv_sec + 1) next = now;
  }
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  return 0;
}
