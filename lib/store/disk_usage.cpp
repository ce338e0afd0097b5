#include "store/disk_usage.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "util/sys.hpp"

namespace layer::store {

namespace {

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};
using DirPtr = std::unique_ptr<DIR, DirCloser>;

}  // namespace

bool DiskUsage::first_time(dev_t dev, ino_t ino) {
  if (!have_dev0_) {
    dev0_ = dev;
    have_dev0_ = true;
  }
  if (dev == dev0_) return seen_dev0_.insert(ino).second;
  return seen_other_.insert(std::to_string(dev) + ":" + std::to_string(ino)).second;
}

uint64_t DiskUsage::add(int dirfd, const std::string& name) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return 0;
  uint64_t total = 0;
  if (first_time(st.st_dev, st.st_ino)) total += static_cast<uint64_t>(st.st_blocks) * 512;
  if (!S_ISDIR(st.st_mode)) return total;
  auto top = sys::open_at(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!top) return total;
  // Each directory is opened afresh beneath `top`, so deep trees hold few fds.
  std::vector<std::string> todo = {"."};
  while (!todo.empty()) {
    std::string rel = todo.back();
    todo.pop_back();
    auto d = sys::open_beneath(top->get(), rel.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0,
                               RESOLVE_NO_SYMLINKS);
    if (!d) continue;
    int fd = d->release();
    DirPtr dir(::fdopendir(fd));
    if (!dir) {
      ::close(fd);
      continue;
    }
    while (struct dirent* e = ::readdir(dir.get())) {
      std::string n = e->d_name;
      if (n == "." || n == "..") continue;
      struct stat cst;
      if (::fstatat(::dirfd(dir.get()), n.c_str(), &cst, AT_SYMLINK_NOFOLLOW) < 0) continue;
      if (first_time(cst.st_dev, cst.st_ino)) total += static_cast<uint64_t>(cst.st_blocks) * 512;
      if (S_ISDIR(cst.st_mode)) todo.push_back(rel == "." ? n : rel + "/" + n);
    }
  }
  return total;
}

}  // namespace layer::store
