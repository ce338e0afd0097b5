#include "lazy/access_list.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/layout.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::lazy {

std::vector<Digest> read_access_list(int root_fd, const Digest& blob) {
  std::vector<Digest> out;
  std::string text;
  try {
    text = sys::xread_file(root_fd, store::Layout::access_list(blob), kAccessListMax * 80,
                           "access list");
  } catch (const Error&) {
    return out;
  }
  size_t start = 0;
  while (start < text.size() && out.size() < kAccessListMax) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) break;  // a torn last line
    std::string line = text.substr(start, nl - start);
    start = nl + 1;
    if (Digest::valid(line)) out.push_back(Digest::parse(line));
  }
  return out;
}

void write_access_list(int root_fd, const Digest& blob, const std::vector<Digest>& list) {
  const std::string dir = store::Layout::access_dir();
  if (::mkdirat(root_fd, dir.c_str(), 0755) < 0 && errno != EEXIST)
    throw Error("access list directory", errno);
  UniqueFd dfd =
      sys::xopen_at(root_fd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, "access list directory");
  std::string text;
  for (size_t i = 0; i < list.size() && i < kAccessListMax; ++i) text += list[i].str() + "\n";
  std::string name = blob.algorithm + "-" + blob.hex;
  sys::xwrite_file_atomic(dfd.get(), "." + name + "." + std::to_string(::getpid()), dfd.get(), name,
                          text, 0644, false);
}

}  // namespace layer::lazy
