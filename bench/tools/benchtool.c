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
 *   benchtool tree SRC DST 1|2
 *     the floor of a first pull's file system work: writes the tree SRC (an
 *     unpacked rootfs) as DST in the shape of a store format 1 layer (every
 *     file with its data) or format 2 (files over 4 KiB as a content object,
 *     written in DST.staging and renamed to DST.objects/sha256/<2 hex>/<62 hex>
 *     after a syncfs, plus a sparse metadata-only entry with the
 *     overlay.metacopy and overlay.redirect xattrs); owners, modes and times
 *     set as an unpack does, one syncfs before and one after the publish.
 *     No decompression, no hashing, data from memory (read before the clock
 *     starts). Prints "seconds=S files=N objects=M".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/xattr.h>
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


/* ---- benchtool tree */
struct tfile {
  char* rel;      /* path relative to SRC */
  struct stat st;
  char* data;     /* regular file: its bytes; symlink: its target */
};
static struct tfile* tfiles;
static size_t ntfiles, captfiles;

static void tree_load(const char* root, const char* rel) {
  char path[16400];
  snprintf(path, sizeof path, "%s/%s", root, rel);
  DIR* d = opendir(path);
  if (!d) fail("opendir", path);
  struct dirent* e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (ntfiles == captfiles) {
      captfiles = captfiles ? 2 * captfiles : 4096;
      tfiles = realloc(tfiles, captfiles * sizeof *tfiles);
    }
    struct tfile* f = &tfiles[ntfiles];
    char r[8192];
    snprintf(r, sizeof r, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
    snprintf(path, sizeof path, "%s/%s", root, r);
    if (lstat(path, &f->st) != 0) fail("lstat", path);
    f->rel = strdup(r);
    f->data = NULL;
    if (S_ISREG(f->st.st_mode) && f->st.st_size > 0) {
      f->data = malloc(f->st.st_size);
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd < 0 || read(fd, f->data, f->st.st_size) != f->st.st_size) fail("read", path);
      close(fd);
    } else if (S_ISLNK(f->st.st_mode)) {
      f->data = calloc(1, f->st.st_size + 1);
      if (readlink(path, f->data, f->st.st_size) < 0) fail("readlink", path);
    }
    ntfiles++;
    if (S_ISDIR(f->st.st_mode)) tree_load(root, r);
  }
  closedir(d);
}

static uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static int cmd_tree(const char* src, const char* dst, int shape) {
  tree_load(src, "");
  char staging[4096], objects[4096], path[16400], obj[16400];
  snprintf(staging, sizeof staging, "%s.staging", dst);
  snprintf(objects, sizeof objects, "%s.objects", dst);
  size_t nobj = 0;
  char (*hexes)[65] = calloc(ntfiles, 65);
  double t0 = now_us();
  if (mkdir(dst, 0755) != 0) fail("mkdir", dst);
  if (shape == 2 && (mkdir(staging, 0700) != 0 || mkdir(objects, 0755) != 0)) fail("mkdir", objects);
  for (size_t i = 0; i < ntfiles; i++) {
    struct tfile* f = &tfiles[i];
    snprintf(path, sizeof path, "%s/%s", dst, f->rel);
    mode_t mode = f->st.st_mode & 07777;
    if (S_ISDIR(f->st.st_mode)) {
      if (mkdir(path, 0700) != 0) fail("mkdir", path);
    } else if (S_ISLNK(f->st.st_mode)) {
      if (symlink(f->data, path) != 0) fail("symlink", path);
    } else if (S_ISREG(f->st.st_mode)) {
      int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd < 0) fail("create", path);
      if (shape == 2 && f->st.st_size > 4096) {
        char* h = hexes[nobj++];
        for (int k = 0; k < 4; k++)
          snprintf(h + 16 * k, 17, "%016llx", (unsigned long long)mix(i * 4 + k));
        snprintf(obj, sizeof obj, "%s/%s", staging, h);
        int ofd = open(obj, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
        if (ofd < 0) fail("create", obj);
        if (write(ofd, f->data, f->st.st_size) != f->st.st_size) fail("write", obj);
        close(ofd);
        char redirect[80];
        snprintf(redirect, sizeof redirect, "/sha256/%.2s/%s", h, h + 2);
        if (ftruncate(fd, f->st.st_size) != 0) fail("ftruncate", path);
        if (fsetxattr(fd, "trusted.overlay.metacopy", "", 0, 0) != 0 ||
            fsetxattr(fd, "trusted.overlay.redirect", redirect, strlen(redirect), 0) != 0)
          fail("fsetxattr", path);
      } else if (f->st.st_size > 0 && write(fd, f->data, f->st.st_size) != f->st.st_size) {
        fail("write", path);
      }
      if (fchown(fd, f->st.st_uid, f->st.st_gid) != 0 || fchmod(fd, mode) != 0) fail("chown", path);
      struct timespec ts[2] = {f->st.st_atim, f->st.st_mtim};
      if (futimens(fd, ts) != 0) fail("futimens", path);
      close(fd);
      continue;
    } else {
      continue; /* devices, fifos, sockets: none in a rootfs worth counting */
    }
    if (fchownat(AT_FDCWD, path, f->st.st_uid, f->st.st_gid, AT_SYMLINK_NOFOLLOW) != 0)
      fail("chown", path);
  }
  /* Directories last (their mode may forbid writing into them; times change
     with every entry made), deepest first. */
  for (size_t i = ntfiles; i-- > 0;) {
    struct tfile* f = &tfiles[i];
    snprintf(path, sizeof path, "%s/%s", dst, f->rel);
    struct timespec ts[2] = {f->st.st_atim, f->st.st_mtim};
    if (!S_ISDIR(f->st.st_mode) && !S_ISLNK(f->st.st_mode)) continue;
    if (S_ISDIR(f->st.st_mode) && chmod(path, f->st.st_mode & 07777) != 0) fail("chmod", path);
    if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) != 0) fail("utimensat", path);
  }
  int dfd = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || syncfs(dfd) != 0) fail("syncfs", dst);
  snprintf(path, sizeof path, "%s/sha256", objects);
  if (shape == 2 && mkdir(path, 0755) != 0) fail("mkdir", path);
  for (size_t i = 0; i < nobj; i++) {
    const char* h = hexes[i];
    snprintf(path, sizeof path, "%s/sha256/%.2s", objects, h);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) fail("mkdir", path);
    snprintf(obj, sizeof obj, "%s/%s", staging, h);
    snprintf(path, sizeof path, "%s/sha256/%.2s/%s", objects, h, h + 2);
    if (rename(obj, path) != 0) fail("rename", obj);
  }
  if (syncfs(dfd) != 0) fail("syncfs", dst);
  close(dfd);
  printf("seconds=%.4f files=%zu objects=%zu\n", (now_us() - t0) / 1e6, ntfiles, nobj);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 4 && strcmp(argv[1], "cow") == 0) return cmd_cow(argv[2], argv[3]);
  if (argc == 5 && strcmp(argv[1], "tree") == 0) return cmd_tree(argv[2], argv[3], atoi(argv[4]));
  if (argc == 5 && strcmp(argv[1], "meta") == 0)
    return cmd_meta(argv[2], atol(argv[3]), atol(argv[4]));
  fprintf(stderr,
          "usage: benchtool cow write|trunc|append|chmod FILE\n"
          "       benchtool meta DIR N SIZE\n");
  return 2;
}
