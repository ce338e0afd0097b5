#include "unpack/unpacker.hpp"

#include <archive.h>
#include <archive_entry.h>

#include <locale.h>

#include <exception>
#include <memory>

#include "unpack/layer_stream.hpp"
#include "unpack/tree_writer.hpp"
#include "util/error.hpp"

namespace layer::unpack {

namespace {

struct ArchiveFree {
  void operator()(archive* a) const { archive_read_free(a); }
};

// What libarchive's read callback needs; errors are kept here because no
// exception may cross libarchive's C frames.
struct ReadState {
  LayerStream* stream;
  const ProgressFn* progress;
  std::exception_ptr error;
};

la_ssize_t read_cb(archive* a, void* opaque, const void** buf) {
  auto* st = static_cast<ReadState*>(opaque);
  try {
    std::string_view chunk = st->stream->next();
    if (*st->progress) (*st->progress)(st->stream->compressed_bytes());
    *buf = chunk.data();
    return static_cast<la_ssize_t>(chunk.size());
  } catch (...) {
    st->error = std::current_exception();
    archive_set_error(a, EIO, "layer stream failed");
    return -1;
  }
}

// libarchive converts PAX path records (UTF-8) to the charset of the current
// locale and fails on any non-ASCII name under the "C" locale that a process
// starts in (real images have such names: Debian's ca-certificates). Unpack
// under a UTF-8 LC_CTYPE for this thread only: names then pass through as the
// bytes the tar carries, and the process locale is left alone.
class Utf8Ctype {
 public:
  Utf8Ctype() : loc_(::newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(0))) {
    if (loc_ != static_cast<locale_t>(0)) old_ = ::uselocale(loc_);
  }
  ~Utf8Ctype() {
    if (loc_ == static_cast<locale_t>(0)) return;
    ::uselocale(old_);
    ::freelocale(loc_);
  }
  Utf8Ctype(const Utf8Ctype&) = delete;
  Utf8Ctype& operator=(const Utf8Ctype&) = delete;

 private:
  locale_t loc_;
  locale_t old_ = static_cast<locale_t>(0);
};

}  // namespace

Stats unpack_layer(int staging_dir, const LayerSpec& spec, ByteSource& src, const Options& opt,
                   const ProgressFn& progress) {
  std::string context = "image " + (spec.image.empty() ? std::string("?") : spec.image) +
                        ": layer " + spec.digest.str();
  LayerStream stream(spec, src, opt.limits, context);
  ReadState state{&stream, &progress, nullptr};
  Utf8Ctype utf8;  // declared before the archive: outlives it
  std::unique_ptr<archive, ArchiveFree> a(archive_read_new());
  if (!a) throw Error(context + ": archive_read_new", ENOMEM);
  archive_read_support_format_tar(a.get());
  TreeWriter writer(staging_dir, opt, context);
  Stats stats;
  try {
    if (archive_read_open(a.get(), &state, nullptr, read_cb, nullptr) != ARCHIVE_OK) {
      const char* msg = archive_error_string(a.get());
      throw Error(context + ": not a tar archive: " + (msg ? msg : "unreadable"));
    }
    for (;;) {
      archive_entry* e = nullptr;
      int r = archive_read_next_header(a.get(), &e);
      if (r == ARCHIVE_EOF) break;
      if (r != ARCHIVE_OK) {
        const char* msg = archive_error_string(a.get());
        std::string after = stats.entries == 0
                                ? std::string("at the first entry")
                                : "after " + std::to_string(stats.entries) + " entries";
        throw Error(context + ": bad tar header " + after + ": " + (msg ? msg : "tar error"));
      }
      if (++stats.entries > opt.limits.max_entries)
        throw Error(context + ": more than " + std::to_string(opt.limits.max_entries) +
                    " entries (raise the limit if this is real)");
      writer.apply(a.get(), e);
    }
    writer.finish();
    stream.finish();
  } catch (const Error&) {
    // A failure of the stream (digest, truncation, corruption) surfaces in
    // libarchive as a read error; report the stream's own error instead.
    if (state.error) std::rethrow_exception(state.error);
    throw;
  }
  stats.compressed_bytes = stream.compressed_bytes();
  stats.tar_bytes = stream.tar_bytes();
  stats.file_bytes = writer.file_bytes();
  if (progress) progress(stats.compressed_bytes);
  return stats;
}

}  // namespace layer::unpack
