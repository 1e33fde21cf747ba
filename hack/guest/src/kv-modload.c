/*
 * kv-modload: loads the kernel modules listed in a file (one path per line, already in
 * dependency order) with finit_module(2) — one process for the whole list instead of
 * one insmod per module, which matters when every fork and exec is emulated.
 *
 * Usage: kv-modload <list> [directory the paths are relative to]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: kv-modload <list> [base directory]\n");
    return 2;
  }
  const char *base = argc > 2 ? argv[2] : "/lib/modules";
  FILE *list = fopen(argv[1], "r");
  if (list == NULL) {
    fprintf(stderr, "kv-modload: %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  char line[512], path[1024];
  int failed = 0;
  while (fgets(line, sizeof line, list) != NULL) {
    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] == '\0' || line[0] == '#') continue;
    snprintf(path, sizeof path, "%s/%s", base, line);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST)) {
      printf("keyvirt-guest: module %s failed to load: %s\n", line, strerror(errno));
      failed++;
    }
    if (fd >= 0) close(fd);
  }
  fclose(list);
  return failed == 0 ? 0 : 1;
}
