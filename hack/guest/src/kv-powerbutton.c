/*
 * kv-powerbutton: turns an ACPI power-button press into an orderly poweroff.
 *
 * It watches every input device whose name is "Power Button" (the ACPI button driver
 * registers them; QEMU's system_powerdown presses it) and, on KEY_POWER, asks init to
 * power off (SIGUSR2 to PID 1 is busybox init's poweroff request: it runs the
 * shutdown actions, syncs, and switches the machine off).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MAX_DEVS 8

static int is_power_button(const char *event) {
  char path[320], name[128] = {0};
  snprintf(path, sizeof path, "/sys/class/input/%s/device/name", event);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return 0;
  ssize_t r = read(fd, name, sizeof name - 1);
  close(fd);
  return r > 0 && strncmp(name, "Power Button", 12) == 0;
}

int main(void) {
  struct pollfd fds[MAX_DEVS];
  int count = 0;
  DIR *dir = opendir("/sys/class/input");
  if (dir == NULL) return 1;
  for (struct dirent *e; (e = readdir(dir)) != NULL && count < MAX_DEVS;) {
    if (strncmp(e->d_name, "event", 5) != 0 || !is_power_button(e->d_name)) continue;
    char dev[300];
    snprintf(dev, sizeof dev, "/dev/input/%s", e->d_name);
    int fd = open(dev, O_RDONLY);
    if (fd < 0) continue;
    fds[count].fd = fd;
    fds[count].events = POLLIN;
    count++;
  }
  closedir(dir);
  if (count == 0) {
    printf("keyvirt-guest: no ACPI power button found\n");
    return 1;
  }
  for (;;) {
    if (poll(fds, (nfds_t)count, -1) < 0) continue;
    for (int i = 0; i < count; i++) {
      if (!(fds[i].revents & POLLIN)) continue;
      struct input_event ev;
      if (read(fds[i].fd, &ev, sizeof ev) != (ssize_t)sizeof ev) continue;
      if (ev.type == EV_KEY && ev.code == KEY_POWER && ev.value == 1) {
        printf("keyvirt-guest: ACPI power button pressed, powering off\n");
        fflush(stdout);
        kill(1, SIGUSR2);
      }
    }
  }
}
