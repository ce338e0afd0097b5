#include "lazy/fetcher.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "util/error.hpp"

namespace layer::lazy {

namespace {

constexpr size_t kNeighbourScan = 256;  // entries looked at each way for tag-alongs

bool has_content(const Entry& e) {
  return e.type == EntryType::Reg && !e.chunks.empty();
}

// Counts on-demand fetches under way, so that the background yields.
class Active {
 public:
  explicit Active(std::atomic<int>& n) : n_(n) { ++n_; }
  ~Active() { --n_; }

 private:
  std::atomic<int>& n_;
};

}  // namespace

Fetcher::Fetcher(const Toc& toc, RangeReader& blob, ObjectStore& objects, FetchOptions opt)
    : toc_(toc), blob_(blob), objects_(objects), opt_(opt) {
  for (size_t i = 0; i < toc_.entries.size(); ++i)
    if (has_content(toc_.entries[i])) by_digest_.emplace(*toc_.entries[i].digest, i);
}

std::optional<size_t> Fetcher::entry_of(const Digest& d) const {
  auto it = by_digest_.find(d);
  if (it == by_digest_.end()) return std::nullopt;
  return it->second;
}

std::vector<size_t> Fetcher::claim(const std::vector<size_t>& want,
                                   std::shared_ptr<std::promise<void>>& promise) {
  std::vector<size_t> out;
  std::shared_future<void> future;
  std::lock_guard lock(mu_);
  for (size_t i : want) {
    const Digest& d = *toc_.entries[i].digest;
    if (in_flight_.count(d)) continue;
    if (!promise) promise = std::make_shared<std::promise<void>>();
    if (!future.valid()) future = promise->get_future().share();
    in_flight_.emplace(d, future);
    out.push_back(i);
  }
  return out;
}

void Fetcher::release(const std::vector<size_t>& claimed, std::exception_ptr err,
                      std::shared_ptr<std::promise<void>>& promise) {
  {
    std::lock_guard lock(mu_);
    for (size_t i : claimed) in_flight_.erase(*toc_.entries[i].digest);
  }
  if (!promise) return;
  if (err)
    promise->set_exception(err);
  else
    promise->set_value();
}

std::map<size_t, std::exception_ptr> Fetcher::fetch(const std::vector<size_t>& entries,
                                                    const CoalesceOptions& co, bool background) {
  std::vector<Span> wanted;
  for (size_t i : entries) {
    auto [lo, hi] = toc_.blob_range(i);
    wanted.push_back({lo, hi - lo});
  }
  std::map<size_t, std::exception_ptr> errors;
  for (const Span& span : coalesce(wanted, co)) {
    auto in_span = [&](size_t k) {
      return wanted[k].offset >= span.offset && wanted[k].end() <= span.end();
    };
    std::string bytes;
    try {
      if (background)
        while (on_demand_active_.load() > 0)
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
      bytes = blob_.read(span.offset, span.length);
    } catch (...) {
      for (size_t k = 0; k < entries.size(); ++k)
        if (in_span(k)) errors[entries[k]] = std::current_exception();
      continue;
    }
    {
      std::lock_guard lock(mu_);
      ++(background ? stats_.background_requests : stats_.on_demand_requests);
      stats_.bytes += bytes.size();
    }
    std::set<Digest> done;
    for (size_t k = 0; k < entries.size(); ++k) {
      const Digest& d = *toc_.entries[entries[k]].digest;
      if (!in_span(k) || !done.insert(d).second) continue;
      try {
        if (objects_.has(d)) continue;
        objects_.put(
            d, [&](const Sink& sink) { decode_entry(toc_, entries[k], bytes, span.offset, sink); });
        std::lock_guard lock(mu_);
        ++stats_.objects;
      } catch (...) {
        errors[entries[k]] = std::current_exception();
      }
    }
    try {
      objects_.flush();
    } catch (...) {
      for (size_t k = 0; k < entries.size(); ++k)
        if (in_span(k) && !errors.count(entries[k])) errors[entries[k]] = std::current_exception();
    }
  }
  return errors;
}

void Fetcher::ensure(size_t i) {
  if (toc_.entries.at(i).type == EntryType::Hardlink) {
    auto t = toc_.find(toc_.entries[i].link);
    if (!t) return;  // check_toc made this impossible
    i = *t;
  }
  const Entry& e = toc_.entries[i];
  if (!has_content(e) || objects_.has(*e.digest)) return;
  {
    std::unique_lock lock(mu_);
    if (in_flight_.count(*e.digest)) {
      lock.unlock();
      wait_for(i);
      return;
    }
  }
  // Small missing files right beside this one come along in the same request.
  auto [lo, hi] = toc_.blob_range(i);
  std::vector<size_t> want{i};
  auto consider = [&](size_t k) {
    const Entry& n = toc_.entries[k];
    if (!has_content(n) || n.size > opt_.neighbour_max) return true;
    auto [nlo, nhi] = toc_.blob_range(k);
    uint64_t new_lo = std::min(lo, nlo), new_hi = std::max(hi, nhi);
    if (new_hi - new_lo > opt_.on_demand.max_span) return false;
    if (nlo > hi + opt_.on_demand.max_gap || nhi + opt_.on_demand.max_gap < lo) return false;
    if (objects_.has(*n.digest)) return true;
    want.push_back(k);
    lo = new_lo;
    hi = new_hi;
    return true;
  };
  for (size_t k = i + 1; k < toc_.entries.size() && k <= i + kNeighbourScan; ++k)
    if (!consider(k)) break;
  for (size_t k = i; k-- > 0 && k + kNeighbourScan >= i;)
    if (!consider(k)) break;

  std::shared_ptr<std::promise<void>> promise;
  std::vector<size_t> claimed = claim(want, promise);
  if (claimed.empty() || claimed.front() != i) {
    // Another caller claimed this content in between: wait for its fetch.
    release(claimed, nullptr, promise);
    wait_for(i);
    return;
  }
  std::exception_ptr err;
  try {
    // Counted only while fetching: a caller that waits for a background
    // batch must not hold that batch's next request back.
    Active active(on_demand_active_);
    auto errors = fetch(claimed, opt_.on_demand, false);
    if (auto it = errors.find(i); it != errors.end()) err = it->second;
  } catch (...) {
    err = std::current_exception();
  }
  // A neighbour that failed is not this caller's error: whoever wants it
  // finds it missing and tries again.
  release(claimed, err, promise);
  if (err) std::rethrow_exception(err);
}

void Fetcher::wait_for(size_t i) {
  const Digest& d = *toc_.entries[i].digest;
  std::shared_future<void> f;
  {
    std::lock_guard lock(mu_);
    if (auto it = in_flight_.find(d); it != in_flight_.end()) f = it->second;
  }
  if (f.valid()) f.get();           // that fetch's error for this content is ours
  if (!objects_.has(d)) ensure(i);  // it was a neighbour that did not make it
}

void Fetcher::complete(const std::vector<size_t>& first, const std::atomic<bool>& stop,
                       bool rest_too) {
  // Three phases, each fetched before the next and never mixed into one
  // request with it: the recorded accesses, the prefetch landmark's
  // entries, the rest in blob order.
  std::vector<std::vector<size_t>> phases(3);
  std::set<Digest> seen;
  auto add = [&](int phase, size_t i) {
    if (i >= toc_.entries.size() || !has_content(toc_.entries[i])) return;
    if (seen.insert(*toc_.entries[i].digest).second) phases[phase].push_back(i);
  };
  for (size_t i : first) add(0, i);
  for (size_t i = 0; i < toc_.prefetch_end; ++i) add(1, i);
  std::vector<size_t> rest(toc_.entries.size());
  for (size_t i = 0; i < rest.size(); ++i) rest[i] = i;
  std::stable_sort(rest.begin(), rest.end(), [&](size_t a, size_t b) {
    return toc_.blob_range(a).first < toc_.blob_range(b).first;
  });
  if (rest_too)
    for (size_t i : rest) add(2, i);

  std::exception_ptr first_error;
  for (const auto& order : phases) {
    size_t pos = 0;
    while (pos < order.size() && !stop.load()) {
      // A batch: the next entries in order, up to one background span's bytes.
      std::vector<size_t> batch;
      uint64_t bytes = 0;
      for (; pos < order.size() && (batch.empty() || bytes < opt_.background.max_span); ++pos) {
        if (objects_.has(*toc_.entries[order[pos]].digest)) continue;
        auto [lo, hi] = toc_.blob_range(order[pos]);
        batch.push_back(order[pos]);
        bytes += hi - lo;
      }
      std::shared_ptr<std::promise<void>> promise;
      std::vector<size_t> claimed = claim(batch, promise);
      std::exception_ptr err;
      try {
        if (!claimed.empty())
          for (auto& [k, e] : fetch(claimed, opt_.background, true))
            if (!err) err = e;
      } catch (...) {
        err = std::current_exception();
      }
      if (err && !first_error) first_error = err;
      // Waiters on a failed batch member get nothing from this failure: they
      // find the object missing and fetch it themselves.
      release(claimed, nullptr, promise);
    }
  }
  if (first_error) std::rethrow_exception(first_error);
}

size_t Fetcher::missing() {
  std::set<Digest> seen;
  size_t n = 0;
  for (const Entry& e : toc_.entries)
    if (has_content(e) && seen.insert(*e.digest).second && !objects_.has(*e.digest)) ++n;
  return n;
}

FetchStats Fetcher::stats() {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace layer::lazy
