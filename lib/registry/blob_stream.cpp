#include "registry/blob_stream.hpp"

#include <chrono>
#include <cstdlib>
#include <thread>

#include "oci/media_types.hpp"
#include "util/error.hpp"

namespace layer::registry {

namespace {

// Cuts per blob in total. Slow transfers and cuts in a row without a byte of
// progress are bounded by RegistryClient::retries() instead.
constexpr int kMaxResumes = 50;

// "bytes A-B/TOTAL": start A and total (-1 for "*"); nullopt if malformed.
std::optional<std::pair<uint64_t, int64_t>> parse_content_range(const std::string& v) {
  if (v.rfind("bytes ", 0) != 0) return std::nullopt;
  char* end = nullptr;
  const char* p = v.c_str() + 6;
  unsigned long long start = std::strtoull(p, &end, 10);
  if (end == p || *end != '-') return std::nullopt;
  p = end + 1;
  std::strtoull(p, &end, 10);
  if (end == p || *end != '/') return std::nullopt;
  p = end + 1;
  if (*p == '*') return std::make_pair(static_cast<uint64_t>(start), int64_t{-1});
  long long total = std::strtoll(p, &end, 10);
  if (end == p || *end != '\0') return std::nullopt;
  return std::make_pair(static_cast<uint64_t>(start), static_cast<int64_t>(total));
}

}  // namespace

BlobStream::BlobStream(RegistryClient& client, oci::Descriptor desc)
    : client_(client), desc_(std::move(desc)), what_("blob " + desc_.digest.str()) {}

void BlobStream::open() {
  HttpRequest req;
  req.range_from = offset_ > 0 ? static_cast<long long>(offset_) : -1;
  std::string path = "/v2/" + client_.ref().path + "/blobs/" + desc_.digest.str();
  t_ = external_ ? client_.get_external(desc_.urls, req, what_) : client_.send(path, req);
  skip_ = 0;
  long st = t_->status();
  // A non-distributable layer the registry does not hold: its descriptor's
  // urls, verified by the digest and size checks of the reader as any blob.
  if (!external_ && st == 404 && !desc_.urls.empty() &&
      oci::is_nondistributable(desc_.media_type)) {
    external_ = true;
    t_ = client_.get_external(desc_.urls, req, what_);
    st = t_->status();
  }
  if (offset_ == 0) {
    if (st != 200) client_.fail(*t_, what_);
    check_length(desc_.size);
    return;
  }
  if (st == 206) {
    auto cr = parse_content_range(t_->headers().get("content-range").value_or(""));
    bool matches = cr && cr->first == offset_ &&
                   (cr->second < 0 || desc_.size < 0 || cr->second == desc_.size);
    if (matches) {
      check_length(desc_.size < 0 ? -1 : desc_.size - static_cast<int64_t>(offset_));
      return;
    }
    // A range we did not ask for: start over and skip what was delivered.
    req.range_from = -1;
    t_ = external_ ? client_.get_external(desc_.urls, req, what_) : client_.send(path, req);
    st = t_->status();
  }
  if (st != 200) client_.fail(*t_, what_);
  check_length(desc_.size);
  skip_ = offset_;  // the registry ignored Range: drop the part already handed out
}

void BlobStream::check_length(int64_t want) const {
  client_.check_content_length(*t_, want, what_);
}

size_t BlobStream::read(void* buf, size_t n) {
  if (desc_.size >= 0) {
    uint64_t left = static_cast<uint64_t>(desc_.size) -
                    std::min<uint64_t>(offset_, static_cast<uint64_t>(desc_.size));
    // Ask one byte beyond the end so that an oversized blob is noticed.
    n = std::min<uint64_t>(n, left + 1);
  }
  for (;;) {
    try {
      if (!t_) open();
      while (skip_ > 0) {
        char scratch[64 << 10];
        size_t k = t_->read(scratch, std::min<uint64_t>(sizeof scratch, skip_));
        if (k == 0) throw TransportError(TransportError::Kind::Transient, 0, "restart ended early");
        skip_ -= k;
      }
      size_t k = t_->read(buf, n);
      if (k == 0 && desc_.size >= 0 && offset_ < static_cast<uint64_t>(desc_.size))
        throw TransportError(TransportError::Kind::Transient, 0,
                             "connection closed after " + std::to_string(offset_) + " bytes");
      offset_ += k;
      if (desc_.size >= 0 && offset_ > static_cast<uint64_t>(desc_.size))
        throw Error("registry " + client_.ref().domain + ": " + what_ + " is larger than the " +
                    std::to_string(desc_.size) + " bytes its descriptor declares");
      if (k > 0) stalls_ = 0;
      return k;
    } catch (const TransportError& e) {
      if (desc_.size >= 0 && offset_ == static_cast<uint64_t>(desc_.size)) {
        t_.reset();  // every byte is in; the connection broke after them
        return 0;
      }
      bool slow = e.kind() == TransportError::Kind::Slow;
      bool again = slow || e.kind() == TransportError::Kind::Transient ||
                   e.kind() == TransportError::Kind::Connect;
      if (slow) ++slow_;
      if (!again || resumes_ >= kMaxResumes || slow_ > client_.retries() ||
          ++stalls_ > client_.retries())
        throw Error(client_.transport_failure(e) + " (downloading " + what_ + " at byte " +
                    std::to_string(offset_) +
                    (desc_.size >= 0 ? " of " + std::to_string(desc_.size) : std::string()) + ", " +
                    std::to_string(resumes_ + 1) + " attempts)");
      ++resumes_;
      t_.reset();
      std::this_thread::sleep_for(std::chrono::milliseconds(100 << std::min(stalls_ - 1, 5)));
    }
  }
}

}  // namespace layer::registry
