#include "lazy/zstd_chunked_writer.hpp"

#include <archive_entry.h>
#include <zstd.h>

#include <memory>

#include <nlohmann/json.hpp>

#include "lazy/tar_converter.hpp"
#include "lazy/toc_reader.hpp"
#include "util/error.hpp"

namespace layer::lazy {

namespace {

using ojson = nlohmann::ordered_json;

constexpr char kSkippableMagic[4] = {0x50, 0x2a, 0x4d, 0x18};  // 0x184D2A50, little-endian
constexpr char kFooterMagic[8] = {'G', 'N', 'U', 'l', 'I', 'n', 'U', 'x'};
constexpr size_t kFooterSize = 64;

struct CCtxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};

// zstd frames on demand: a frame starts at the first byte written into it.
class ZstdFrames : public FrameSink {
 public:
  ZstdFrames(BlobOut& out, int level) : out_(out), ctx_(ZSTD_createCCtx()) {
    if (!ctx_) throw Error("zstd:chunked: ZSTD_createCCtx", ENOMEM);
    ZSTD_CCtx_setParameter(ctx_.get(), ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(ctx_.get(), ZSTD_c_checksumFlag, 1);
  }
  void write(const char* p, size_t n) override {
    if (n == 0) return;
    open_ = true;
    out_.plain(p, n);
    ZSTD_inBuffer in{p, n, 0};
    while (in.pos < in.size) pump(in, ZSTD_e_continue);
  }
  void end_frame() override {
    if (!open_) return;
    ZSTD_inBuffer in{nullptr, 0, 0};
    while (pump(in, ZSTD_e_end) != 0) {
    }
    open_ = false;
  }
  uint64_t offset() const override { return out_.size(); }

 private:
  size_t pump(ZSTD_inBuffer& in, ZSTD_EndDirective mode) {
    char buf[64 << 10];
    ZSTD_outBuffer ob{buf, sizeof buf, 0};
    size_t rc = ZSTD_compressStream2(ctx_.get(), &ob, &in, mode);
    if (ZSTD_isError(rc)) throw Error(std::string("zstd:chunked: ") + ZSTD_getErrorName(rc));
    out_.put(buf, ob.pos);
    return rc;
  }

  BlobOut& out_;
  std::unique_ptr<ZSTD_CCtx, CCtxFree> ctx_;
  bool open_ = false;
};

void put_le32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}
void put_le64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}

void skippable(BlobOut& out, const std::string& data) {
  std::string h(kSkippableMagic, 4);
  put_le32(h, static_cast<uint32_t>(data.size()));
  out.put(h.data(), h.size());
  out.put(data.data(), data.size());
}

}  // namespace

ZstdChunkedResult write_zstd_chunked(ByteSource& tar, const Sink& sink,
                                     const ZstdChunkedOptions& opt) {
  BlobOut out(sink);
  ZstdFrames frames(out, opt.level);
  ojson entries = ojson::array();
  auto on_entry = [&](archive_entry* e, const std::vector<ChunkOut>& chunks, const Digest* digest) {
    ojson j = toc_entry_json(e, true);
    j.erase("userName");
    j.erase("groupName");
    if (chunks.empty()) {
      entries.push_back(std::move(j));
      return;
    }
    j["digest"] = digest->str();
    j["offset"] = chunks.front().offset;
    j["endOffset"] = chunks.back().end;
    if (chunks.size() == 1) {
      entries.push_back(std::move(j));
      return;
    }
    // A file of several frames: the "reg" entry describes the first chunk
    // too, "chunk" entries the rest (containers/storage's layout).
    std::string name = j["name"];
    for (const ChunkOut& c : chunks) {
      if (c.file_offset > 0) j = ojson{{"type", "chunk"}, {"name", name}, {"offset", c.offset}};
      j["chunkSize"] = c.size;
      if (c.file_offset > 0) j["chunkOffset"] = c.file_offset;
      j["chunkDigest"] = c.digest.str();
      entries.push_back(std::move(j));
    }
  };
  ZstdChunkedResult res;
  res.entries = convert_tar(tar, frames, opt.chunk_size, true, "", on_entry).entries;

  std::string manifest = ojson{{"version", 1}, {"entries", std::move(entries)}}.dump();
  std::string compressed(ZSTD_compressBound(manifest.size()), '\0');
  size_t n = ZSTD_compress(compressed.data(), compressed.size(), manifest.data(), manifest.size(),
                           opt.level);
  if (ZSTD_isError(n)) throw Error(std::string("zstd:chunked: TOC: ") + ZSTD_getErrorName(n));
  compressed.resize(n);
  uint64_t manifest_offset = out.size() + 8;
  skippable(out, compressed);
  std::string footer;
  put_le64(footer, manifest_offset);
  put_le64(footer, compressed.size());
  put_le64(footer, manifest.size());
  put_le64(footer, 1);  // the CRFS-style TOC
  put_le64(footer, 0);  // no tar-split: offset, compressed and uncompressed length
  put_le64(footer, 0);
  put_le64(footer, 0);
  footer.append(kFooterMagic, sizeof kFooterMagic);
  if (footer.size() != kFooterSize) throw Error("zstd:chunked: footer size");
  skippable(out, footer);

  std::string checksum = Hasher::of(compressed).str();
  std::string position = std::to_string(manifest_offset) + ":" + std::to_string(compressed.size()) +
                         ":" + std::to_string(manifest.size()) + ":1";
  res.annotations = {{kZstdChunkedChecksum, checksum},
                     {kZstdChunkedPosition, position},
                     {kZstdChunkedChecksumOld, checksum},
                     {kZstdChunkedPositionOld, position}};
  res.diff_id = out.diff_id();
  res.blob_size = out.size();
  res.blob_digest = out.digest();
  return res;
}

}  // namespace layer::lazy
