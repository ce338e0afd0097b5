// LazyObjects: the background completion and the access lists
// (docs/lazy-pull.md, "Background completion").
#include <unistd.h>

#include <algorithm>
#include <thread>
#include <vector>

#include "lazy/access_list.hpp"
#include "lazy/lazy_objects.hpp"
#include "lazy/lazy_objects_layer.hpp"
#include "lazy/throttled_source.hpp"
#include "registry/blob_stream.hpp"
#include "store/store.hpp"
#include "unpack/unpacker.hpp"
#include "util/error.hpp"

namespace layer::lazy {

namespace {

constexpr size_t kStreams = 3;  // layers completed at once

}  // namespace

void LazyObjects::log_failure(const std::string& what, std::exception_ptr e) {
  if (!log_) return;
  try {
    std::rethrow_exception(e);
  } catch (const Error& err) {
    log_(what + ": " + err.line());
  } catch (const std::exception& err) {
    log_(what + ": " + err.what());
  } catch (...) {
    log_(what + ": unknown error");
  }
}

size_t LazyObjects::complete_all(const BackgroundOptions& opt, const std::atomic<bool>& stop) {
  // What earlier runs opened first, and the landmarks, of every layer before
  // any layer's stream: they are what a container wants soonest.
  for (auto& l : layers_) {
    if (stop.load()) return 0;
    try {
      Fetcher& f = fetcher_of(*l);
      std::vector<size_t> first;
      {
        std::lock_guard g(l->mu);
        for (const Digest& d : l->accessed)
          if (auto i = f.entry_of(d)) first.push_back(*i);
      }
      f.complete(first, stop, false);
    } catch (...) {
      // The stream below fetches them anyway.
      log_failure("lazy background fetch of layer " + l->dir, std::current_exception());
    }
  }
  save_access_lists();
  // The layers' streams side by side, as a pull unpacks its layers (most of
  // the time goes to creating the staging trees' inodes), at most
  // kStreams at once, sharing one rate limit.
  std::vector<Layer*> todo;
  for (auto& l : layers_)
    if (l->root.valid()) todo.push_back(l.get());
  const size_t streams = std::min(todo.size(), kStreams);
  RateLimit limit(opt.rate);
  std::atomic<size_t> next{0}, done{0};
  auto worker = [&] {
    for (size_t k; !stop.load() && (k = next++) < todo.size();) {
      try {
        complete_layer(*todo[k], opt, limit, stop);
        ++done;
      } catch (...) {
        if (!stop.load())
          log_failure("lazy completion of layer " + todo[k]->dir + " (it stays lazy)",
                      std::current_exception());
      }
    }
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < streams; ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  return done.load();
}

bool LazyObjects::complete_layer(Layer& l, const BackgroundOptions& opt, RateLimit& limit,
                                 const std::atomic<bool>& stop) {
  fetcher_of(l);  // the registry client
  // A shared store lock for the stream only: gc waits for it as for a pull.
  store::Store st = store::Store::open(l.root_path, store::LockMode::Shared, false);
  if (!st.is_lazy_layer(l.diff_id)) return false;
  registry::BlobStream blob(*l.client, l.ll.record.blob);
  auto yield = [this, quiet = std::chrono::steady_clock::duration(opt.quiet).count()] {
    return on_demand_.load() > 0 || std::chrono::steady_clock::now().time_since_epoch().count() <
                                        last_on_demand_.load() + quiet;
  };
  ThrottledSource src(blob, limit, yield, stop);
  unpack::LayerSpec spec;
  spec.media_type = l.ll.record.blob.media_type;
  spec.digest = l.ll.record.blob.digest;
  spec.size = l.ll.record.blob.size;
  spec.diff_id = l.diff_id;
  spec.image = l.ll.record.image;
  unpack::Options uopt;
  uopt.rootless = ::geteuid() != 0;
  return st.complete_lazy_layer(spec, src, uopt);
}

void LazyObjects::save_access_lists() {
  for (auto& l : layers_) {
    if (!l->root.valid()) continue;
    std::vector<Digest> list;
    {
      std::lock_guard g(l->mu);
      if (!l->dirty) continue;
      list = l->accessed;
      l->dirty = false;
    }
    try {
      write_access_list(l->root.get(), l->ll.record.blob.digest, list);
    } catch (...) {
      if (!save_failed_.exchange(true))
        log_failure("lazy access list of layer " + l->dir, std::current_exception());
    }
  }
}

}  // namespace layer::lazy
