#include "lazy/lazy_record.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "store/layout.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::lazy {

namespace {

using nlohmann::json;

constexpr size_t kMaxRecordBytes = 1 << 20;

// Reads back toc.blob: only the ranges written at pull time hold data.
class FileRanges : public RangeReader {
 public:
  FileRanges(int fd, uint64_t size, std::string what)
      : fd_(fd), size_(size), what_(std::move(what)) {}
  std::string read(uint64_t offset, uint64_t length) override {
    if (offset > size_ || length > size_ - offset)
      throw Error(what_ + ": range " + std::to_string(offset) + "+" + std::to_string(length) +
                  " lies beyond the blob's " + std::to_string(size_) + " bytes");
    std::string out(length, '\0');
    size_t got = 0;
    while (got < length) {
      ssize_t n = ::pread(fd_, out.data() + got, length - got, static_cast<off_t>(offset + got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw Error(what_, errno);
      if (n == 0) throw Error(what_ + ": short file");
      got += static_cast<size_t>(n);
    }
    return out;
  }

 private:
  int fd_;
  uint64_t size_;
  std::string what_;
};

}  // namespace

std::string RecordingReader::read(uint64_t offset, uint64_t length) {
  std::string s = in_.read(offset, length);
  std::lock_guard g(mu_);
  bytes_ += s.size();
  auto& slot = pieces_[offset];
  if (slot.size() < s.size()) slot = s;
  return s;
}

void write_lazy_record(int layer_dirfd, const LazyRecord& rec,
                       const std::map<uint64_t, std::string>& toc_pieces) {
  json d = {{"mediaType", rec.blob.media_type},
            {"digest", rec.blob.digest.str()},
            {"size", rec.blob.size},
            {"annotations", rec.blob.annotations}};
  json j = {{"descriptor", d}, {"locator", json::parse(rec.locator)}, {"image", rec.image}};
  std::string text = j.dump(2) + "\n";
  UniqueFd lj = sys::xopen_at(layer_dirfd, store::Layout::kLazyJson,
                              O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0644, "staging lazy.json");
  if (auto w = sys::write_all(lj.get(), text.data(), text.size()); !w)
    throw Error("write staging lazy.json", w.error());
  UniqueFd tb = sys::xopen_at(layer_dirfd, store::Layout::kTocBlob,
                              O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0644, "staging toc.blob");
  if (rec.blob.size < 0 || ::ftruncate(tb.get(), rec.blob.size) < 0)
    throw Error("truncate staging toc.blob", rec.blob.size < 0 ? EINVAL : errno);
  for (const auto& [off, bytes] : toc_pieces) {
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::pwrite(tb.get(), bytes.data() + done, bytes.size() - done,
                           static_cast<off_t>(off + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw Error("write staging toc.blob", n < 0 ? errno : EIO);
      done += static_cast<size_t>(n);
    }
  }
}

LazyLayer read_lazy_layer(int layer_dirfd, const std::string& what, const TocLimits& limits) {
  LazyLayer out;
  std::string text = sys::xread_file(layer_dirfd, store::Layout::kLazyJson, kMaxRecordBytes,
                                     what + "/" + store::Layout::kLazyJson);
  try {
    json j = json::parse(text);
    const json& d = j.at("descriptor");
    out.record.blob.media_type = d.at("mediaType").get<std::string>();
    out.record.blob.digest = Digest::parse(d.at("digest").get<std::string>());
    out.record.blob.size = d.at("size").get<int64_t>();
    out.record.blob.annotations = d.at("annotations").get<std::map<std::string, std::string>>();
    out.record.locator = j.at("locator").dump();
    out.record.image = j.at("image").get<std::string>();
  } catch (const json::exception& e) {
    throw Error(what + "/" + store::Layout::kLazyJson + ": " + e.what());
  } catch (const Error& e) {
    throw Error(what + "/" + store::Layout::kLazyJson + ": " + e.line());
  }
  auto src = TocSource::of(out.record.blob);
  if (!src) throw Error(what + ": the recorded descriptor names no TOC");
  UniqueFd tb = sys::xopen_at(layer_dirfd, store::Layout::kTocBlob, O_RDONLY | O_NOFOLLOW, 0,
                              what + "/" + store::Layout::kTocBlob);
  FileRanges file(tb.get(), src->blob_size, what + "/" + store::Layout::kTocBlob);
  out.toc = read_toc(file, *src, what, limits);
  return out;
}

}  // namespace layer::lazy
