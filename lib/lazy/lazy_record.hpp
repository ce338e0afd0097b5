// The durable record of a lazily pulled layer (docs/lazy-pull.md), kept in
// its layer directory until the layer is complete: lazy.json says where the
// blob is (descriptor, registry locator without secrets) and toc.blob holds
// the blob's bytes that the TOC was read from, at their own offsets in a
// sparse file, so the TOC is parsed and verified again from them exactly as
// at pull time. What is missing is not listed: it is every object the TOC
// names that objects/ lacks. Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "lazy/toc.hpp"
#include "lazy/toc_reader.hpp"
#include "oci/image.hpp"

namespace layer::lazy {

struct LazyRecord {
  oci::Descriptor blob;  // the layer's descriptor, annotations included
  std::string locator;   // oci::ImageSource::locator() of the pull's source
  std::string image;     // the image it was pulled for (messages only)
};

// Passes reads through and keeps a copy of every byte range read.
class RecordingReader : public RangeReader {
 public:
  explicit RecordingReader(RangeReader& in) : in_(in) {}
  std::string read(uint64_t offset, uint64_t length) override;
  const std::map<uint64_t, std::string>& pieces() const { return pieces_; }
  uint64_t bytes() const { return bytes_; }

 private:
  RangeReader& in_;
  std::mutex mu_;  // guards pieces_, bytes_
  std::map<uint64_t, std::string> pieces_;
  uint64_t bytes_ = 0;
};

// Writes lazy.json and toc.blob into `layer_dirfd` (new files, not synced:
// the layer's publication syncs them).
void write_lazy_record(int layer_dirfd, const LazyRecord& rec,
                       const std::map<uint64_t, std::string>& toc_pieces);

// A layer's record and its TOC, verified again against the descriptor's
// annotation. Throws Error naming `what` (the layer directory).
struct LazyLayer {
  LazyRecord record;
  Toc toc;
};
LazyLayer read_lazy_layer(int layer_dirfd, const std::string& what, const TocLimits& limits = {});

}  // namespace layer::lazy
