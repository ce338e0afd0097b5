/* Small timing tools for bench/overlay.py (compiled by it with cc).
 *
 *   benchtool cow write|trunc|append|chmod FILE
 *       write:  open(O_WRONLY) + pwrite 4 KiB at offset 0
 *       trunc:  open(O_WRONLY|O_TRUNC) + write 4 KiB
 *       append: open(O_WRONLY|O_APPEND) + write 4 KiB
 *       chmod:  chmod(FILE, 0600)
 *     prints "first_us=N close_us=N": the latency of the open and first write
 *     (or of the chmod), then of the close.
 *   benchtool meta DIR N SIZE
 *     creates DIR, then N files of SIZE bytes in it (open O_CREAT|O_EXCL +
 *     write + close), stats them all, opens and reads them all, deletes them
 *     all, removes DIR; prints "create=OPS stat=OPS read=OPS delete=OPS"
 *     (operations per second of each phase).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void fail(const char* what, const char* path) {
  fprintf(stderr, "benchtool: %s '%s': %s\n", what, path, strerror(errno));
  exit(1);
}

static int cmd_cow(const char* mode, const char* path) {
  static char buf[4096];
  memset(buf, 'w', sizeof buf);
  double t0 = now_us(), t1;
  int fd = -1;
  if (strcmp(mode, "chmod") == 0) {
    if (chmod(path, 0600) != 0) fail("chmod", path);
    t1 = now_us();
  } else {
    int flags = O_WRONLY | O_CLOEXEC;
    if (strcmp(mode, "trunc") == 0)
      flags |= O_TRUNC;
    else if (strcmp(mode, "append") == 0)
      flags |= O_APPEND;
    else if (strcmp(mode, "write") != 0) {
      fprintf(stderr, "benchtool: cow: unknown mode '%s'\n", mode);
      return 2;
    }
    fd = open(path, flags);
    if (fd < 0) fail("open", path);
    ssize_t n = (flags & (O_TRUNC | O_APPEND)) ? write(fd, buf, sizeof buf)
                                               : pwrite(fd, buf, sizeof buf, 0);
    if (n != (ssize_t)sizeof buf) fail("write", path);
    t1 = now_us();
  }
  double t2 = t1;
  if (fd >= 0) {
    if (close(fd) != 0) fail("close", path);
    t2 = now_us();
  }
  printf("first_us=%.1f close_us=%.1f\n", t1 - t0, t2 - t1);
  return 0;
}

static int cmd_meta(const char* dir, long n, long size) {
  char* buf = calloc(1, size > 0 ? size : 1);
  char path[4096];
  if (mkdir(dir, 0755) != 0) fail("mkdir", dir);
  double t[5];
  t[0] = now_us();
  for (long i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/f%06ld", dir, i);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) fail("create", path);
    if (size > 0 && write(fd, buf, size) != size) fail("write", path);
    if (close(fd) != 0) fail("close", path);
  }
  t[1] = now_us();
  for (long i = 0; i < n; i++) {
    struct stat st;
    snprintf(path, sizeof path, "%s/f%06ld", dir, i);
    if (stat(path, &st) != 0) fail("stat", path);
    if (st.st_size != size) {
      fprintf(stderr, "benchtool: '%s': size %lld, expected %ld\n", path, (long long)st.st_size,
              size);
      return 1;
    }
  }
  t[2] = now_us();
  for (long i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/f%06ld", dir, i);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("open", path);
    if (read(fd, buf, size) != size) fail("read", path);
    close(fd);
  }
  t[3] = now_us();
  for (long i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/f%06ld", dir, i);
    if (unlink(path) != 0) fail("unlink", path);
  }
  t[4] = now_us();
  if (rmdir(dir) != 0) fail("rmdir", dir);
  printf("create=%.0f stat=%.0f read=%.0f delete=%.0f\n", n / ((t[1] - t[0]) / 1e6),
         n / ((t[2] - t[1]) / 1e6), n / ((t[3] - t[2]) / 1e6), n / ((t[4] - t[3]) / 1e6));
  free(buf);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 4 && strcmp(argv[1], "cow") == 0) return cmd_cow(argv[2], argv[3]);
  if (argc == 5 && strcmp(argv[1], "meta") == 0)
    return cmd_meta(argv[2], atol(argv[3]), atol(argv[4]));
  fprintf(stderr,
          "usage: benchtool cow write|trunc|append|chmod FILE\n"
          "       benchtool meta DIR N SIZE\n");
  return 2;
}
