#include "lazy/range_fetcher.hpp"

#include <algorithm>
#include <chrono>
#include <thread>

#include "registry/registry_client.hpp"
#include "util/error.hpp"

namespace layer::lazy {

namespace {

constexpr int kAttempts = 4;  // per span, for cut connections

// "bytes A-B/TOTAL" -> A and B; false if malformed.
bool content_range(const std::string& v, uint64_t& first, uint64_t& last) {
  if (v.rfind("bytes ", 0) != 0) return false;
  char* end = nullptr;
  const char* p = v.c_str() + 6;
  first = std::strtoull(p, &end, 10);
  if (end == p || *end != '-') return false;
  p = end + 1;
  last = std::strtoull(p, &end, 10);
  return end != p && *end == '/';
}

}  // namespace

std::vector<Span> coalesce(std::vector<Span> wanted, const CoalesceOptions& opt) {
  std::erase_if(wanted, [](const Span& s) { return s.length == 0; });
  std::sort(wanted.begin(), wanted.end(),
            [](const Span& a, const Span& b) { return a.offset < b.offset; });
  std::vector<Span> out;
  for (const Span& s : wanted) {
    if (!out.empty()) {
      Span& last = out.back();
      uint64_t end = std::max(last.end(), s.end());
      bool near = s.offset <= last.end() || s.offset - last.end() <= opt.max_gap;
      // Overlapping ranges always merge: a wanted range is never split.
      if (s.offset < last.end() || (near && end - last.offset <= opt.max_span)) {
        last.length = end - last.offset;
        continue;
      }
    }
    out.push_back(s);
  }
  return out;
}

BlobRanges::BlobRanges(registry::RegistryClient& client, oci::Descriptor blob)
    : client_(client), blob_(std::move(blob)), what_("blob " + blob_.digest.str()) {}

std::string BlobRanges::fetch_once(uint64_t offset, uint64_t length) {
  registry::HttpRequest req;
  req.range_from = static_cast<long long>(offset);
  req.range_to = static_cast<long long>(offset + length - 1);
  auto t = client_.send("/v2/" + client_.ref().path + "/blobs/" + blob_.digest.str(), req);
  ++requests_;
  std::string range = "bytes " + std::to_string(offset) + "-" + std::to_string(offset + length - 1);
  if (t->status() == 200 && offset == 0 && blob_.size >= 0 &&
      length == static_cast<uint64_t>(blob_.size)) {
    // The whole blob was asked for; a 200 is the same bytes.
  } else if (t->status() == 206) {
    uint64_t first = 0, last = 0;
    if (!content_range(t->headers().get("content-range").value_or(""), first, last) ||
        first != offset || last != offset + length - 1)
      throw Error("registry " + client_.ref().domain + ": " + what_ + ": asked for " + range +
                  ", got '" + t->headers().get("content-range").value_or("") + "'");
  } else if (t->status() == 200) {
    throw Error("registry " + client_.ref().domain + ": " + what_ +
                ": Range requests are not supported (200 instead of 206)");
  } else {
    client_.fail(*t, what_ + " (" + range + ")");
  }
  std::string out(length, '\0');
  size_t got = 0;
  while (got < out.size()) {
    size_t n = t->read(out.data() + got, out.size() - got);
    if (n == 0) break;
    got += n;
    fetched_ += n;
  }
  char extra;
  if (got != length || t->read(&extra, 1) != 0)
    throw registry::TransportError(
        registry::TransportError::Kind::Transient, 0,
        "answer to " + range + " is not " + std::to_string(length) + " bytes long");
  return out;
}

std::string BlobRanges::read(uint64_t offset, uint64_t length) {
  if (length == 0) return {};
  if (blob_.size >= 0 && (offset > static_cast<uint64_t>(blob_.size) ||
                          length > static_cast<uint64_t>(blob_.size) - offset))
    throw Error(what_ + ": range " + std::to_string(offset) + "+" + std::to_string(length) +
                " lies beyond its " + std::to_string(blob_.size) + " bytes");
  for (int attempt = 1;; ++attempt) {
    try {
      return fetch_once(offset, length);
    } catch (const registry::TransportError& e) {
      bool again = e.kind() == registry::TransportError::Kind::Transient ||
                   e.kind() == registry::TransportError::Kind::Connect;
      if (!again || attempt >= kAttempts)
        throw Error(client_.transport_failure(e) + " (fetching " + what_ + " bytes " +
                    std::to_string(offset) + "+" + std::to_string(length) + ")");
      std::this_thread::sleep_for(std::chrono::milliseconds(100 << attempt));
    }
  }
}

std::vector<std::string> BlobRanges::read_many(const std::vector<Span>& wanted,
                                               const CoalesceOptions& opt) {
  std::vector<std::string> out(wanted.size());
  for (const Span& span : coalesce(wanted, opt)) {
    std::string bytes = read(span.offset, span.length);
    for (size_t i = 0; i < wanted.size(); ++i)
      if (wanted[i].length > 0 && wanted[i].offset >= span.offset && wanted[i].end() <= span.end())
        out[i] = bytes.substr(wanted[i].offset - span.offset, wanted[i].length);
  }
  return out;
}

}  // namespace layer::lazy
