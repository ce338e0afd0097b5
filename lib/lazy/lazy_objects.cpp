#include "lazy/lazy_objects.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lazy/access_list.hpp"
#include "lazy/lazy_objects_layer.hpp"
#include "lazy/range_fetcher.hpp"
#include "registry/reference.hpp"
#include "registry/registry_client.hpp"
#include "registry/registry_source.hpp"
#include "store/layout.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::lazy {

namespace {

constexpr size_t kFewObjects = 8;  // flushed by fdatasync each, not by one syncfs

// objects/<alg>/<2 hex> and <rest>, relative to objects/.
std::string fanout_of(const Digest& d) {
  return d.algorithm + "/" + d.hex.substr(0, 2);
}

}  // namespace

bool ObjectDir::has(const Digest& d) {
  struct stat st;
  std::string rel = store::Layout::object_redirect(d).substr(1);
  return ::fstatat(dir_, rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

void ObjectDir::put(const Digest& d, const std::function<void(const Sink&)>& produce) {
  std::string what = "object " + d.str();
  std::string fan = fanout_of(d);
  if (::mkdirat(dir_, d.algorithm.c_str(), 0755) < 0 && errno != EEXIST) throw Error(what, errno);
  if (::mkdirat(dir_, fan.c_str(), 0755) < 0 && errno != EEXIST) throw Error(what, errno);
  UniqueFd fanfd = sys::xopen_at(dir_, fan, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, what);
  // Nameless until complete, verified and durable: a crash leaves nothing.
  UniqueFd fd = sys::xopen_at(fanfd.get(), ".", O_TMPFILE | O_WRONLY, 0444, what);
  produce([&](const char* p, size_t n) {
    if (auto w = sys::write_all(fd.get(), p, n); !w) throw Error(what, w.error());
  });
  std::lock_guard g(mu_);
  pending_[std::this_thread::get_id()].push_back(
      Pending{std::move(fd), std::move(fanfd), d.hex.substr(2), what});
}

void ObjectDir::flush() {
  std::vector<Pending> mine;
  {
    std::lock_guard g(mu_);
    auto it = pending_.find(std::this_thread::get_id());
    if (it == pending_.end()) return;
    mine = std::move(it->second);
    pending_.erase(it);
  }
  if (mine.empty()) return;
  // The data is on disk before any name: a name only ever holds verified
  // bytes. One syncfs for many objects; an fdatasync each for a few, since a
  // syncfs also waits for everything else written to the file system (a
  // background completion's staging tree: hundreds of ms for one open).
  if (mine.size() <= kFewObjects) {
    for (Pending& p : mine)
      if (::fdatasync(p.file.get()) < 0) throw Error(p.what, errno);
  } else if (::syncfs(dir_) < 0) {
    throw Error("syncfs of the objects", errno);
  }
  for (Pending& p : mine) {
    std::string proc = "/proc/self/fd/" + std::to_string(p.file.get());
    if (::linkat(AT_FDCWD, proc.c_str(), p.fanout.get(), p.name.c_str(), AT_SYMLINK_FOLLOW) < 0 &&
        errno != EEXIST)
      throw Error(p.what, errno);
  }
}

LazyObjects::LazyObjects(const std::vector<std::string>& lowerdirs, int objects_dir, Log log)
    : objects_(objects_dir), log_(std::move(log)) {
  for (const std::string& dir : lazy_layer_dirs(lowerdirs)) {
    UniqueFd fd = sys::xopen_at(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY, 0, "layer '" + dir + "'");
    auto l = std::make_unique<Layer>();
    l->dir = dir;
    l->ll = read_lazy_layer(fd.get(), dir);
    // <root>/layers/<alg>/<hex>: the store, for the access list and the
    // completion; anything else is served on demand only.
    auto up = [](std::string& p) {
      auto s = p.rfind('/');
      std::string name = s == std::string::npos ? "" : p.substr(s + 1);
      p = s == std::string::npos ? "" : p.substr(0, s);
      return name;
    };
    std::string rest = dir, hex = up(rest), alg = up(rest), layers = up(rest);
    if (store::Layout::layers_dir(alg) == layers + "/" + alg && !rest.empty() &&
        Digest::valid(alg + ":" + hex)) {
      if (auto r = sys::open_at(AT_FDCWD, rest.c_str(), O_RDONLY | O_DIRECTORY); r) {
        l->root = std::move(*r);
        l->root_path = rest;
        l->diff_id = Digest::parse(alg + ":" + hex);
        l->accessed = read_access_list(l->root.get(), l->ll.record.blob.digest);
        l->listed.insert(l->accessed.begin(), l->accessed.end());
      }
    }
    const Toc& toc = l->ll.toc;
    for (size_t i = 0; i < toc.entries.size(); ++i) {
      const Entry& e = toc.entries[i];
      if (e.type == EntryType::Reg && e.digest && !e.chunks.empty())
        by_digest_.emplace(*e.digest, std::make_pair(l.get(), i));
    }
    layers_.push_back(std::move(l));
  }
}

LazyObjects::~LazyObjects() = default;

Result<void> LazyObjects::fetch(const Digest& d) {
  auto it = by_digest_.find(d);
  if (it == by_digest_.end()) return Errno{ENOENT};
  Layer& l = *it->second.first;
  {
    std::lock_guard g(l.mu);
    if (l.listed.insert(d).second) {
      l.accessed.push_back(d);
      l.dirty = true;
    }
  }
  // The background completion waits while any open waits for the network.
  ++on_demand_;
  struct Busy {
    LazyObjects& o;
    ~Busy() {
      o.last_on_demand_.store(std::chrono::steady_clock::now().time_since_epoch().count());
      --o.on_demand_;
    }
  } busy{*this};
  try {
    fetcher_of(l).ensure(it->second.second);
    return {};
  } catch (const std::bad_alloc&) {
    return Errno{ENOMEM};
  } catch (const std::exception& e) {
    if (log_) {
      std::string why = e.what();
      if (auto* err = dynamic_cast<const Error*>(&e)) why = err->line();
      log_("lazy fetch of " + d.str() + " ('" + l.ll.toc.entries[it->second.second].path +
           "', layer " + l.dir + "): " + why);
    }
    return Errno{EIO};
  }
}

Fetcher& LazyObjects::fetcher_of(Layer& l) {
  std::call_once(l.connect, [&] {
    try {
      registry::RegistryLocator loc = registry::parse_locator(l.ll.record.locator);
      l.client = std::make_unique<registry::RegistryClient>(
          registry::Reference::parse(loc.repository), loc.options);
      l.ranges = std::make_unique<BlobRanges>(*l.client, l.ll.record.blob);
      l.fetcher = std::make_unique<Fetcher>(l.ll.toc, *l.ranges, objects_);
    } catch (...) {
      l.connect_error = std::current_exception();
    }
  });
  if (l.connect_error) std::rethrow_exception(l.connect_error);
  return *l.fetcher;
}

FetchStats LazyObjects::stats() {
  FetchStats sum;
  for (auto& l : layers_) {
    // fetcher is set once, under the call_once, before any fetch uses it.
    if (!l->fetcher) continue;
    FetchStats s = l->fetcher->stats();
    sum.on_demand_requests += s.on_demand_requests;
    sum.background_requests += s.background_requests;
    sum.bytes += s.bytes;
    sum.objects += s.objects;
  }
  return sum;
}

}  // namespace layer::lazy
