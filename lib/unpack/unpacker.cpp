#include "unpack/unpacker.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <unistd.h>

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

// Two things libarchive accepts silently that we refuse: an entry of an
// unknown type (read as a regular file, as POSIX says, with no trace of the
// type byte) and a pax path or linkpath with a NUL inside (cut short at the
// NUL). So this looks at the raw header blocks of each entry, starting where
// libarchive says the entry's headers begin and stepping over pax and GNU
// long-name headers. libarchive has already parsed and checksummed these
// blocks; only the typeflag and size fields and the pax records' keys are
// read here. `type` is 0 when the headers are no longer in the stream's
// window (nothing to check then). Returns a reason to refuse, or empty.
std::string check_raw_headers(const LayerStream& stream, uint64_t pos, char& type) {
  type = 0;
  for (int hops = 0; hops < 64; ++hops) {
    char h[512];
    if (!stream.peek(pos, sizeof h, h)) return {};
    char t = h[156];
    if (t != 'x' && t != 'g' && t != 'X' && t != 'L' && t != 'K') {
      type = t;
      return {};
    }
    uint64_t size = 0;
    const auto* f = reinterpret_cast<const unsigned char*>(h + 124);
    if (f[0] & 0x80) return {};  // base-256: libarchive refuses such headers anyway
    for (int i = 0; i < 12 && f[i] >= '0' && f[i] <= '7'; ++i) size = size * 8 + (f[i] - '0');
    if ((t == 'x' || t == 'X') && size <= (1 << 20)) {
      std::string data(size, '\0');
      if (stream.peek(pos + 512, size, data.data())) {
        // Records are "LEN key=value\n"; LEN counts the whole record.
        size_t at = 0;
        while (at < data.size()) {
          size_t sp = data.find(' ', at);
          if (sp == std::string::npos) break;
          size_t len = 0;
          for (size_t i = at; i < sp && len < data.size(); ++i) {
            if (data[i] < '0' || data[i] > '9') return {};  // malformed: libarchive's to judge
            len = len * 10 + static_cast<size_t>(data[i] - '0');
          }
          if (len <= sp - at || at + len > data.size()) break;
          std::string_view rec(data.data() + sp + 1, at + len - sp - 2);
          size_t eq = rec.find('=');
          if (eq != std::string_view::npos) {
            std::string_view key = rec.substr(0, eq), value = rec.substr(eq + 1);
            if ((key == "path" || key == "linkpath") && value.find('\0') != std::string_view::npos)
              return "NUL byte inside the pax " + std::string(key);
          }
          at += len;
        }
      }
    }
    pos += 512 + ((size + 511) & ~uint64_t{511});
  }
  return {};
}

bool known_typeflag(char t) {
  // Regular ('0', NUL, '7' contiguous), link, symlink, char, block, dir,
  // fifo; GNU sparse ('S') and dumpdir ('D') which libarchive understands.
  return t == 0 || (t >= '0' && t <= '7') || t == 'S' || t == 'D';
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
  // Without root, whiteouts, opaque markers and owners can only take the
  // rootless forms, whatever the caller asked for.
  Options effective = opt;
  if (::geteuid() != 0) effective.rootless = true;
  TreeWriter writer(staging_dir, effective, context);
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
      char type = 0;
      std::string why = check_raw_headers(
          stream, static_cast<uint64_t>(archive_read_header_position(a.get())), type);
      if (why.empty() && !known_typeflag(type))
        why = "unknown tar entry type '" +
              (type >= 0x20 && type < 0x7f ? std::string(1, type) : std::to_string(type)) + "'";
      if (!why.empty()) {
        const char* name = archive_entry_pathname(e);
        std::string shown = name ? std::string(name).substr(0, 300) : "?";
        for (char& c : shown)
          if (static_cast<unsigned char>(c) < 0x20) c = '?';
        throw Error(context + ": entry '" + shown + "': " + why);
      }
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
  stats.content_digests = std::move(writer.content_digests());
  stats.implicit_dirs = writer.implicit_dirs();
  stats.objects = writer.objects();
  stats.object_bytes = writer.object_bytes();
  stats.new_object_bytes = writer.new_object_bytes();
  if (progress) progress(stats.compressed_bytes);
  return stats;
}

}  // namespace layer::unpack
