#include "lazy/estargz_writer.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <memory>

#include <nlohmann/json.hpp>

#include "lazy/tar_converter.hpp"
#include "lazy/toc_reader.hpp"
#include "util/error.hpp"

namespace layer::lazy {

namespace {

using ojson = nlohmann::ordered_json;

constexpr std::string_view kTocTarName = "stargz.index.json";
constexpr size_t kBlock = 512;

// gzip members on demand: a member opens at the first byte written into it.
class GzipFrames : public FrameSink {
 public:
  GzipFrames(BlobOut& out, int level) : out_(out), level_(level) {}
  ~GzipFrames() override {
    if (open_) deflateEnd(&z_);
  }
  void write(const char* p, size_t n) override {
    if (n == 0) return;
    if (!open_) start();
    out_.plain(p, n);
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(p));
    z_.avail_in = static_cast<uInt>(n);
    pump(Z_NO_FLUSH);
  }
  void end_frame() override {
    if (!open_) return;
    pump(Z_FINISH);
    deflateEnd(&z_);
    open_ = false;
  }
  uint64_t offset() const override { return out_.size(); }

 private:
  void start() {
    z_ = z_stream{};
    if (deflateInit2(&z_, level_ < 0 ? Z_DEFAULT_COMPRESSION : level_, Z_DEFLATED, 16 + MAX_WBITS,
                     8, Z_DEFAULT_STRATEGY) != Z_OK)
      throw Error("eStargz: deflateInit2", ENOMEM);
    open_ = true;
  }
  void pump(int flush) {
    char buf[64 << 10];
    for (;;) {
      z_.next_out = reinterpret_cast<Bytef*>(buf);
      z_.avail_out = sizeof buf;
      int rc = deflate(&z_, flush);
      if (rc == Z_STREAM_ERROR) throw Error("eStargz: deflate failed");
      out_.put(buf, sizeof buf - z_.avail_out);
      if (flush == Z_FINISH ? rc == Z_STREAM_END : z_.avail_in == 0 && z_.avail_out != 0) return;
    }
  }

  BlobOut& out_;
  int level_;
  z_stream z_{};
  bool open_ = false;
};

// A ustar header for the TOC entry (as the reference writes it: name and
// size, all else zero), followed by its data, padding and end-of-archive.
std::string toc_tar(const std::string& json) {
  std::string h(kBlock, '\0');
  std::memcpy(h.data(), kTocTarName.data(), kTocTarName.size());
  std::snprintf(h.data() + 100, 8, "%07o", 0644u);
  std::snprintf(h.data() + 108, 8, "%07o", 0u);
  std::snprintf(h.data() + 116, 8, "%07o", 0u);
  std::snprintf(h.data() + 124, 12, "%011llo", static_cast<unsigned long long>(json.size()));
  std::snprintf(h.data() + 136, 12, "%011o", 0u);
  h[156] = '0';
  std::memcpy(h.data() + 257,
              "ustar\0"
              "00",
              8);
  std::memset(h.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(h.data() + 148, 8, "%06o", sum);
  h[155] = ' ';
  std::string out = h + json;
  out.append((kBlock - json.size() % kBlock) % kBlock, '\0');
  out.append(2 * kBlock, '\0');
  return out;
}

}  // namespace

EstargzResult write_estargz(ByteSource& tar, const Sink& sink, const EstargzOptions& opt) {
  BlobOut out(sink);
  GzipFrames gz(out, opt.level);
  ojson entries = ojson::array();
  EstargzResult res;
  auto on_entry = [&](archive_entry* e, const std::vector<ChunkOut>& chunks, const Digest* digest) {
    ojson j = toc_entry_json(e, false);
    if (chunks.empty()) {
      entries.push_back(std::move(j));
      return;
    }
    // As the reference writer: the "reg" entry is the first chunk, "chunk"
    // entries follow; a chunk that is not the file's tail carries its size.
    uint64_t size = static_cast<uint64_t>(archive_entry_size(e));
    for (const ChunkOut& c : chunks) {
      if (c.file_offset > 0) j = ojson{{"name", j["name"]}, {"type", "chunk"}};
      j["offset"] = c.offset;
      if (c.file_offset > 0) j["chunkOffset"] = c.file_offset;
      if (size - c.file_offset >= opt.chunk_size) j["chunkSize"] = c.size;
      if (c.file_offset == 0) j["digest"] = digest->str();
      j["chunkDigest"] = c.digest.str();
      entries.push_back(std::move(j));
    }
  };
  res.entries =
      convert_tar(tar, gz, opt.chunk_size, false, std::string(kTocTarName), on_entry).entries;

  uint64_t toc_offset = out.size();
  ojson toc = {{"version", 1}, {"entries", std::move(entries)}};
  std::string json = toc.dump(1, '\t');
  std::string toc_member = toc_tar(json);
  gz.write(toc_member.data(), toc_member.size());
  gz.end_frame();
  std::string footer = estargz_footer(toc_offset);
  out.put(footer.data(), footer.size());
  res.toc_digest = Hasher::of(json);
  res.diff_id = out.diff_id();
  res.blob_size = out.size();
  res.blob_digest = out.digest();
  return res;
}

}  // namespace layer::lazy
